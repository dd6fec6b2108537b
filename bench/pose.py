"""Pose extraction throughput: tmor's pipeline against a naive loop and the model's forward alone.

(a) pipeline: PoseStage.process over the clips (threaded PyAV decode, resize in the decoder,
    frames batched across clips, batched NMS on the device, tracking, npz encoding);
(b) naive:    OpenCV decode, then ``YOLO.predict`` on one frame per call;
(c) forward:  the network's forward alone on pre-decoded, pre-batched frames already on the device
    (the limit for (a)).
All three see the same frames (the first --frames of each clip, every frame). Prints frames/s
(median of --repeats runs) and the ratios a/b and a/c.

    OMP_NUM_THREADS=1 python bench/pose.py --frames 24 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIPS = ["kinetics_tai_chi_1.mp4", "basketball_two_person.mp4", "ntu_two_person_hug.mp4",
         "ucf101_archery.avi"]  # fmt: skip


def cut(src: Path, dst: Path, frames: int) -> Path:
    argv = [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-i", str(src), "-map",
            "0:v:0", "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "18", "-pix_fmt", "yuv420p", str(dst)]
    subprocess.run(argv, check=True)
    return dst


def run_pipeline(paths: list[Path], stage) -> int:
    """One pass of the (already set up) stage over the clips, from mp4 bytes to npz bytes."""
    from tmor.pipeline.stage import Sample

    samples = [Sample(key=p.stem.replace("_", ""), row={},
                      members={"fetch": {"mp4": p.read_bytes(), "json": b"{}"}}) for p in paths]
    return sum(r.record["frames"] for r in stage.process(iter(samples)) if r.ok)


def run_naive(paths: list[Path], yolo, imgsz: int, device: str) -> int:
    import cv2

    n = 0
    kwargs = {"half": True} if device.startswith("cuda") else {}
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yolo.predict(frame, imgsz=imgsz, device=device, verbose=False, **kwargs)
            n += 1
        cap.release()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DATA / "models" / "yolo11n-pose.pt"))
    ap.add_argument("--clips", nargs="*", default=CLIPS)
    ap.add_argument("--frames", type=int, default=24, help="frames per clip")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import torch

    from tmor.pipeline import video
    from tmor.pipeline.pose import get_backend, resolve_device
    from tmor.pipeline.pose.stage import PoseConfig, PoseStage

    device = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="tmor_bench_pose_"))
    paths = [cut(DATA / "videos" / c, tmp / (Path(c).stem + ".mp4"), args.frames)
             for c in args.clips]
    cfg = PoseConfig(model=args.model, device=device, imgsz=args.imgsz,
                     batch_size=args.batch_size, clips_in_flight=len(paths), fps=1000.0)

    stage = PoseStage(cfg)  # model loading is outside every timed run, as for (b) and (c)
    stage.setup()
    backend = get_backend("ultralytics", args.model, device=device, imgsz=args.imgsz)
    backend.load()
    from ultralytics import YOLO

    yolo = YOLO(args.model, task="pose")
    # (c): pre-decoded, resized, padded, batched and on the device before the clock starts
    frames = []
    for p in paths:
        info = video.probe(p)
        frames += [f for _, f in video.iter_frames(p, size=backend.input_size(info.width,
                                                                               info.height))]
    batches = []
    by_shape: dict[tuple, list] = {}
    for f in frames:  # batches of one shape each, as the pipeline forms them
        by_shape.setdefault(f.shape, []).append(f)
    chunks = [same[i:i + args.batch_size] for same in by_shape.values()
              for i in range(0, len(same), args.batch_size)]
    for chunk in chunks:
        h = -(-max(f.shape[0] for f in chunk) // 32) * 32
        w = -(-max(f.shape[1] for f in chunk) // 32) * 32
        arr = np.full((len(chunk), h, w, 3), 114, np.uint8)
        for j, f in enumerate(chunk):
            arr[j, :f.shape[0], :f.shape[1]] = f
        x = torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).contiguous()
        batches.append((x.half() if backend._half else x.float()) / 255.0)

    def forward() -> int:
        with torch.inference_mode():
            for x in batches:
                backend._net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return len(frames)

    runs = {
        "a_pipeline": lambda: run_pipeline(paths, stage),
        "b_naive": lambda: run_naive(paths, yolo, args.imgsz, device),
        "c_forward": forward,
    }
    for fn in runs.values():  # warm-up: model loads, cudnn autotune, first-call costs
        fn()
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            n = fn()
            rates[name].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    print(f"device {device} ({gpu})"
          f", torch threads {torch.get_num_threads()}, {len(paths)} clips x {args.frames} frames "
          f"= {len(frames)} frames, imgsz {args.imgsz}, batch {args.batch_size}, "
          f"{args.repeats} repeats")
    for k, v in rates.items():
        print(f"{k:12s} median {med[k]:8.1f} frames/s   runs {[round(x, 1) for x in v]}")
    print(f"ratio a/b = {med['a_pipeline'] / med['b_naive']:.2f}  (goal >= 2)")
    print(f"ratio a/c = {med['a_pipeline'] / med['c_forward']:.2f}  (goal >= 0.8)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
