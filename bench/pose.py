"""Pose extraction throughput: tmor's pipeline against ultralytics' batched ``predict`` and the
model's forward alone, and the pipeline's own cost per frame with a stand-in network.

Inputs: the shared clips re-encoded by fetch's own ffmpeg command (``cut_argv``: <= 360p, h264,
the fetch stage's keyframes), the first ``--seconds`` of each, every frame.

(a) pipeline: ``PoseStage.process`` from mp4 bytes to pose.npz bytes (decode, staging, letterbox,
    forward, NMS, rescale, tracking, npz);
(b) naive:    OpenCV decode, then ``YOLO.predict`` on lists of ``--batch-size`` frames;
(c) forward:  the network's forward alone on pre-decoded batches already on the device (the limit).
``--null-model``: (a) with the network replaced by a stand-in of the same input and output shapes
that costs nothing (it replays one real output per input shape), one decode worker and torch on
one thread, so the figure is the pipeline's own cost: frames per CPU-second of this process
(``null_model_fps_per_core`` = frames / (user + system CPU time), i.e. total frames/s divided by
the cores busy; ``null_model_host_fps_per_core`` leaves out the device work, which CPU torch does
here and the GPU on a GPU machine), for today's pipeline (frames resized on the device) side by
side with the previous one (resized by the decoder's swscale on the host).
Medians of ``--repeats`` interleaved runs; ``--json PATH`` writes the figures.

    OMP_NUM_THREADS=1 python bench/pose.py --null-model --seconds 3 --json /tmp/pose_null.json
    python bench/pose.py --device cuda --seconds 3 --batch-size 128 --json /tmp/pose.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/_fetched.py
from _fetched import fetch_encode  # noqa: E402

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
CLIPS = ["kinetics_tai_chi_1.mp4", "basketball_two_person.mp4", "ntu_two_person_hug.mp4",
         "ucf101_archery.avi", "dribbling_basketball_portrait.mp4",
         "two_person_handover_portrait.mp4"]  # fmt: skip


class NullNet:
    """A stand-in for the pose network: same input and output shapes, no cost.

    The first call for an input shape runs the real network once on one frame and keeps that raw
    output; every later call returns it expanded to the batch (a view: no compute, no copy), so
    NMS, rescaling and tracking see real candidate counts."""

    def __init__(self, real: Any):
        self.real = real
        self.cache: dict[tuple, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __call__(self, x: Any) -> Any:
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        out = self.cache.get(key)
        if out is None:
            pred = self.real(x[:1])
            out = self.cache[key] = (pred[0] if isinstance(pred, (tuple, list)) else pred)
        return out.expand(x.shape[0], -1, -1)


class DeviceClock:
    """CPU seconds the device work (normalize, forward, NMS, rescale) takes on this CPU when the
    device is CPU torch: on a GPU that work is the GPU's, and the host only launches it."""

    def __init__(self, backend):
        self.seconds = 0.0
        dp = getattr(backend, "_device_pose", None)
        if dp is None:
            return
        run = dp.run

        def timed_run(*a, **k):
            t = time.thread_time()
            try:
                return run(*a, **k)
            finally:
                self.seconds += time.thread_time() - t

        dp.run = timed_run


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def samples_of(paths: list[Path], copies: int = 1) -> list:
    from tmor.pipeline.stage import Sample

    return [Sample(key=f"{p.stem.replace('_', '')}{k}", row={},
                   members={"fetch": {"mp4": p.read_bytes(), "json": b"{}"}})
            for k in range(copies) for p in paths]


def run_pipeline(samples: list, stage) -> int:
    """One pass of the (already set up) stage over the clips, from mp4 bytes to npz bytes."""
    results = list(stage.process(iter(samples)))
    bad = [r.error for r in results if not r.ok]
    if bad:
        raise SystemExit(f"pipeline failed: {bad[:3]}")
    return sum(r.record["frames"] for r in results)


def run_naive(paths: list[Path], yolo, imgsz: int, device: str, batch: int) -> int:
    """OpenCV decode, then ``YOLO.predict`` on lists of ``batch`` frames (BGR, as it wants)."""
    import cv2

    n = 0
    kwargs = {"half": True} if device.startswith("cuda") else {}
    frames: list[np.ndarray] = []

    def flush() -> None:
        if frames:
            yolo.predict(list(frames), imgsz=imgsz, device=device, verbose=False, **kwargs)
            frames.clear()

    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
            n += 1
            if len(frames) >= batch:
                flush()
        cap.release()
    flush()
    return n


def make_stage(args: argparse.Namespace, device: str, decode_workers: int,
               resize: str = "device"):
    from tmor.pipeline.pose.stage import PoseConfig, PoseStage

    cfg = PoseConfig(model=args.model, device=device, imgsz=args.imgsz,
                     batch_size=args.batch_size, clips_in_flight=decode_workers,
                     decode_workers=decode_workers, backend_options={"resize": resize})
    stage = PoseStage(cfg)  # model loading is outside every timed run
    stage.setup()
    return stage


def timed(fns: dict, repeats: int, clocks: dict | None = None) -> dict[str, dict[str, Any]]:
    """Per function: median frames/s over wall time and over CPU time (and, with ``clocks``,
    over the CPU time outside the device work, and that work's share); runs interleaved."""
    for fn in fns.values():  # warm-up: first-call costs, cudnn autotune, cached null outputs
        fn()
    runs: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in fns}
    frames: dict[str, int] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            clock = (clocks or {}).get(name)
            if clock is not None:
                clock.seconds = 0.0
            c0, t0 = cpu_seconds(), time.perf_counter()
            n = frames[name] = fn()
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            dev = clock.seconds if clock is not None else 0.0
            runs[name].append((n / wall, n / max(cpu, 1e-9), n / max(cpu - dev, 1e-9),
                               dev / max(cpu, 1e-9)))
    return {k: {"fps": statistics.median(r[0] for r in v),
                "fps_per_cpu_s": statistics.median(r[1] for r in v),
                "host": statistics.median(r[2] for r in v),
                "device_share": statistics.median(r[3] for r in v),
                "runs_fps": [round(r[0], 1) for r in v], "frames": frames[k]}
            for k, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DATA / "models" / "yolo11n-pose.pt"))
    ap.add_argument("--clips", nargs="*", default=CLIPS)
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds of each clip")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=1,
                    help="each clip given this many times (distinct keys) to the pipeline")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--decode-workers", type=int, default=4)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--null-model", action="store_true",
                    help="only the pipeline's own cost: stand-in network, 1 decode worker, "
                         "torch on 1 thread")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()

    import torch

    from tmor.devices import resolve_device

    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="tmor_bench_pose_"))
    try:
        paths = [fetch_encode(DATA / "videos" / c, tmp / (Path(c).stem + ".mp4"), args.seconds)
                 for c in args.clips]
        samples = samples_of(paths, args.copies)
        out: dict[str, Any] = {"bench": "pose", "device": device, "clips": len(paths),
                               "seconds_per_clip": args.seconds, "imgsz": args.imgsz,
                               "batch_size": args.batch_size, "repeats": args.repeats}
        if device.startswith("cuda"):
            out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        if args.null_model:
            torch.set_num_threads(1)
            stages = {"device_resize": make_stage(args, device, 1),
                      "decoder_resize": make_stage(args, device, 1, resize="decoder")}
            clocks = {}
            for name, stage in stages.items():
                stage.backend._net = NullNet(stage.backend._net)
                clocks[name] = DeviceClock(stage.backend)
            r = timed({k: (lambda st=st: run_pipeline(samples, st)) for k, st in stages.items()},
                      args.repeats, clocks)
            new, old = r["device_resize"], r["decoder_resize"]
            frames = new["frames"]
            out.update(mode="null_model", frames=frames, decode_workers=1, torch_threads=1,
                       null_model_fps_per_core=round(new["fps_per_cpu_s"], 1),
                       null_model_fps=round(new["fps"], 1), runs_fps=new["runs_fps"],
                       null_model_host_fps_per_core=round(new["host"], 1),
                       device_work_cpu_share=round(new["device_share"], 3),
                       baseline_decoder_resize={
                           "fps_per_core": round(old["fps_per_cpu_s"], 1),
                           "fps": round(old["fps"], 1), "runs_fps": old["runs_fps"],
                           "host_fps_per_core": round(old["host"], 1),
                           "device_work_cpu_share": round(old["device_share"], 3)},
                       ratio_fps_per_core=round(new["fps_per_cpu_s"] / old["fps_per_cpu_s"], 2),
                       ratio_host_fps_per_core=round(new["host"] / old["host"], 2))
            print(f"null model, {len(paths)} clips, {frames} frames, device {device}, torch "
                  f"threads 1, 1 decode worker, medians of {args.repeats} interleaved runs")
            print(f"{'':16s} {'frames/s':>9s} {'per CPU-s':>10s} {'host per CPU-s':>15s} "
                  f"{'device work':>12s}")
            for name, v in r.items():
                print(f"{name:16s} {v['fps']:9.1f} {v['fps_per_cpu_s']:10.1f} {v['host']:15.1f} "
                      f"{100 * v['device_share']:11.0f}%")
            print(f"device_resize / decoder_resize: {out['ratio_fps_per_core']:.2f}x per CPU-s, "
                  f"{out['ratio_host_fps_per_core']:.2f}x host per CPU-s (goal >= 500 per core; "
                  "'device work' is what CPU torch does here and a GPU does on a GPU machine)")
        else:
            stage = make_stage(args, device, args.decode_workers)
            backend = stage.backend
            from ultralytics import YOLO

            from tmor.pipeline import video

            yolo = YOLO(args.model, task="pose")
            # (c): decoded, resized, padded, batched and on the device before the clock starts
            frames = []
            for p in paths:
                info = video.probe(p)
                size = backend.input_size(info.width, info.height)
                frames += [f for _, f in video.iter_frames(p, size=size)]
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            by_canvas: dict[tuple[int, int], list[np.ndarray]] = {}
            for f in frames:  # the canvases the pipeline batches by, full batches
                by_canvas.setdefault((-(-f.shape[0] // 32) * 32, -(-f.shape[1] // 32) * 32),
                                     []).append(f)
            batches = []
            for (h, w), same in by_canvas.items():
                for i in range(0, len(same), args.batch_size):
                    chunk = same[i:i + args.batch_size]
                    arr = np.full((args.batch_size, h, w, 3), 114, np.uint8)
                    for j, f in enumerate(chunk):
                        arr[j, :f.shape[0], :f.shape[1]] = f
                    x = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2)
                    batches.append((x.to(dtype) / 255.0, len(chunk)))

            def forward() -> int:
                with torch.inference_mode():
                    for x, _ in batches:
                        backend._net(x)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                return len(frames)

            r = timed({"pipeline": lambda: run_pipeline(samples, stage),
                       "naive": lambda: run_naive(paths, yolo, args.imgsz, device,
                                                  args.batch_size),
                       "forward": forward}, args.repeats)
            frames_pipeline = r["pipeline"]["frames"]
            out.update(mode="full", frames=len(frames), frames_pipeline=frames_pipeline,
                       decode_workers=args.decode_workers,
                       torch_threads=torch.get_num_threads(),
                       canvases=[list(k) for k in by_canvas],
                       pipeline_fps=round(r["pipeline"]["fps"], 1),
                       naive_fps=round(r["naive"]["fps"], 1),
                       forward_fps=round(r["forward"]["fps"], 1),
                       pipeline_over_forward=round(r["pipeline"]["fps"] / r["forward"]["fps"], 3),
                       pipeline_over_naive=round(r["pipeline"]["fps"] / r["naive"]["fps"], 2),
                       runs_fps={k: v["runs_fps"] for k, v in r.items()})
            print(f"device {device} ({out.get('gpu', 'cpu')}), torch threads "
                  f"{torch.get_num_threads()}, {len(paths)} clips, {len(frames)} frames, "
                  f"imgsz {args.imgsz}, batch {args.batch_size}, {args.repeats} repeats")
            for k, v in r.items():
                print(f"{k:9s} median {v['fps']:8.1f} frames/s   runs {v['runs_fps']}")
            print(f"pipeline / naive   = {out['pipeline_over_naive']:.2f}x")
            print(f"pipeline / forward = {out['pipeline_over_forward']:.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
