"""MotionBERT lifting throughput (``--lift motionbert:CKPT``), with a random-weight lite checkpoint.

(a) lifter alone, tracks x frames per second: ``--tracks`` synthetic COCO-17 tracks of
    ``--frames`` frames through :meth:`MotionBERTLifter.lift_tracks` (every chunk of every track
    and its mirror image, ``--batch-size`` a call, padded and masked) against the baseline of
    MotionBERT's ``infer_wild.py``: one chunk at a time, the input and its mirror image in two
    calls;
(b) inside extract-pose: the pose stage's frames per second on the shared clips (fetch-encoded,
    the first ``--seconds`` of each) with and without the lifter, same settings otherwise;
(c) precision: the largest difference of fp16 / bf16 autocast from fp32 on the same tracks.
Medians of ``--repeats`` interleaved runs; ``--json PATH`` writes the figures. On this shared
CPU run with ``OMP_NUM_THREADS=1``; the load average is recorded.

    OMP_NUM_THREADS=1 python bench/lift.py --json /tmp/lift.json
    python bench/lift.py --device cuda --tracks 256 --frames 300 --json /tmp/lift.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/_fetched.py
from _fetched import fetch_encode  # noqa: E402


def _pose_bench() -> Any:
    """bench/pose.py as a module (its clip list, samples and pipeline runner)."""
    spec = importlib.util.spec_from_file_location("tmor_bench_pose", HERE / "pose.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_checkpoint(path: Path) -> Path:
    """A lite DSTformer with random weights (perturbed off the init), saved as MotionBERT does."""
    import torch

    from tmor.pipeline.pose.dstformer import DSTformer

    torch.manual_seed(0)
    net = DSTformer()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if "norm" in name else 0.03))
    torch.save({"model_pos": {"module." + k: v for k, v in net.state_dict().items()}}, path)
    return path


def random_tracks(n: int, frames: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [(rng.uniform([40, 20], [600, 340], (frames, 17, 2)).astype(np.float32),
             rng.uniform(0.05, 1, (frames, 17)).astype(np.float32), (640, 360))
            for _ in range(n)]


def one_chunk_at_a_time(lifter, tracks: list) -> None:
    """infer_wild.py's loop: per chunk, the network on it and on its mirror image, batch 1."""
    import torch

    from tmor.pipeline.pose.motionbert import chunks_of, flip, network_input

    for kp, sc, (w, h) in tracks:
        x = network_input(kp, sc, w, h)
        for s in chunks_of(len(x), lifter.maxlen):
            t = torch.from_numpy(x[s])[None].to(lifter.device)
            a = lifter._forward(t, None, lifter.precision)
            b = lifter._forward(flip(t), None, lifter.precision)
            ((a + flip(b)) / 2).cpu()


def interleaved(fns: dict, repeats: int, sync: Any) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up
        fn()
    sync()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            runs[name].append(time.perf_counter() - t0)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tracks", type=int, default=6)
    ap.add_argument("--frames", type=int, default=60, help="frames per synthetic track")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="sequences (chunks, mirror images) per call [64 on CUDA, 1]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5, help="seconds of each clip in (b)")
    ap.add_argument("--clips", type=int, default=3, help="shared clips in (b); 0: skip (b)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--pose-batch-size", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from tmor.devices import resolve_device
    from tmor.pipeline.pose.motionbert import MotionBERTLifter

    device = resolve_device(args.device)
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    tmp = Path(tempfile.mkdtemp(prefix="tmor_bench_lift_"))
    out: dict[str, Any] = {"bench": "lift", "device": device, "torch_threads":
                           torch.get_num_threads(), "load_average": list(os.getloadavg())}
    if cuda:
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        ckpt = random_checkpoint(tmp / "lite.bin")
        lifter = MotionBERTLifter(str(ckpt), device, batch_size=args.batch_size)
        lifter.load()
        tracks = random_tracks(args.tracks, args.frames)
        work = args.tracks * args.frames
        # (a) the lifter alone
        runs = interleaved({"batched": lambda: lifter.lift_tracks(tracks),
                            "one_chunk_at_a_time": lambda: one_chunk_at_a_time(lifter, tracks)},
                           args.repeats, sync)
        rate = {k: work / statistics.median(v) for k, v in runs.items()}
        out["lifter"] = {
            "tracks": args.tracks, "frames_per_track": args.frames, "sequences_per_call":
            lifter.batch_size, "precision": lifter.precision,
            "batched_track_frames_per_s": round(rate["batched"], 1),
            "one_chunk_at_a_time_track_frames_per_s": round(rate["one_chunk_at_a_time"], 1),
            "ratio": round(rate["batched"] / rate["one_chunk_at_a_time"], 2),
            "runs_s": {k: [round(x, 3) for x in v] for k, v in runs.items()}}
        print(f"device {device} ({out.get('gpu', 'cpu')}), torch threads "
              f"{out['torch_threads']}, load {out['load_average'][0]:.1f}; lifter alone, "
              f"{args.tracks} tracks x {args.frames} frames, {lifter.precision}, "
              f"{lifter.batch_size} sequences a call, medians of {args.repeats}")
        for k, v in rate.items():
            print(f"  {k:20s} {v:9.1f} track-frames/s")
        # (c) precision against fp32, on the same tracks
        ref = np.concatenate(lifter.lift_tracks(tracks)) if lifter.precision == "fp32" else None
        if ref is None:
            fp32 = MotionBERTLifter(str(ckpt), device, precision="fp32")
            fp32.load()
            ref = np.concatenate(fp32.lift_tracks(tracks))
        out["precision_vs_fp32"] = {"output_max_abs": round(float(np.abs(ref).max()), 4)}
        for p in ("fp16", "bf16"):
            other = MotionBERTLifter(str(ckpt), device, precision=p)
            other.load()
            try:
                err = float(np.abs(np.concatenate(other.lift_tracks(tracks)) - ref).max())
            except RuntimeError as e:  # an autocast dtype this device lacks
                out["precision_vs_fp32"][p] = f"unavailable: {e}"[:200]
                continue
            out["precision_vs_fp32"][p] = {"max_abs_diff": round(err, 6), "relative_to_max":
                                           round(err / float(np.abs(ref).max()), 6)}
            print(f"  {p} autocast vs fp32: max abs diff {err:.2e} (outputs up to "
                  f"{np.abs(ref).max():.2f})")
        # (b) inside extract-pose
        if args.clips:
            out["pipeline"] = pipeline_bench(args, device, ckpt, tmp)
        out["load_average_end"] = list(os.getloadavg())
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pipeline_bench(args: argparse.Namespace, device: str, ckpt: Path, tmp: Path
                   ) -> dict[str, Any]:
    from tmor.pipeline.pose.stage import PoseConfig, PoseStage

    pb = _pose_bench()
    paths = [fetch_encode(pb.DATA / "videos" / c, tmp / (Path(c).stem + ".mp4"), args.seconds)
             for c in pb.CLIPS[:args.clips]]
    samples = pb.samples_of(paths)
    stages = {}
    for name, lift in (("without_lifter", "none"), ("with_lifter", f"motionbert:{ckpt}")):
        cfg = PoseConfig(model=str(pb.DATA / "models" / "yolo11n-pose.pt"), device=device,
                         imgsz=args.imgsz, batch_size=args.pose_batch_size, lift=lift,
                         lift_batch_size=args.batch_size)
        stages[name] = PoseStage(cfg)
        stages[name].setup()  # model loading stays outside the timed runs
    tracks: dict[str, int] = {}
    counted: dict[str, int] = {}

    def run(name: str) -> None:
        results = list(stages[name].process(iter(samples)))
        bad = [r.error for r in results if not r.ok]
        if bad:
            raise SystemExit(f"pipeline failed: {bad[:3]}")
        tracks[name] = sum(r.record["persons"] for r in results)
        counted[name] = sum(r.record["frames"] for r in results)

    sync = (lambda: __import__("torch").cuda.synchronize()) if device.startswith("cuda") else (
        lambda: None)
    runs = interleaved({k: (lambda k=k: run(k)) for k in stages}, args.repeats, sync)
    frames = counted["without_lifter"]
    fps = {k: frames / statistics.median(v) for k, v in runs.items()}
    res = {"clips": len(paths), "frames": frames, "tracks": tracks["with_lifter"],
           "imgsz": args.imgsz, "pose_batch_size": args.pose_batch_size,
           "fps_without_lifter": round(fps["without_lifter"], 2),
           "fps_with_lifter": round(fps["with_lifter"], 2),
           "ratio": round(fps["with_lifter"] / fps["without_lifter"], 3),
           "runs_s": {k: [round(x, 3) for x in v] for k, v in runs.items()}}
    print(f"extract-pose, {len(paths)} clips, {frames} frames, {res['tracks']} tracks, imgsz "
          f"{args.imgsz}: {res['fps_without_lifter']:.2f} frames/s without the lifter, "
          f"{res['fps_with_lifter']:.2f} with ({res['ratio']:.2f}x)")
    return res


if __name__ == "__main__":
    main()
