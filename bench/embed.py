"""Throughput of the embed stage (clips/s) against (a) a naive loop and (b) the encoder alone.

    OMP_NUM_THREADS=1 .venv/bin/python bench/embed.py [--model tiny|vitb32|SPEC] [--clips 26]

stage: ``EmbedStage.process`` on mp4 bytes (PyAV decode of 8 frames at the ViCLIP stride in
       threads, resized in the decoder, batched forward of video and caption).
naive: per clip, OpenCV decodes every frame, keeps 8 at the same stride, cv2.resize to 224,
       then one forward for that clip's video and one for its text.
limit: the encoder's forward alone (video + text) on the same clips pre-decoded, in batches.
Each is run ``--repeats`` times (interleaved); medians and ratios are printed. Inputs: the
real clips of ../shared/data/videos, repeated to ``--clips``. Random-weight models go through
the same checkpoint loading as real weights.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "data" / "videos"


def model_spec(name: str, folder: Path) -> str:
    from tmor.pipeline.vl.tiny import open_clip_config, write_open_clip

    if name == "tiny":
        return write_open_clip(folder)
    if name == "vitb32":
        return write_open_clip(folder, "bench-vitb32", open_clip_config("ViT-B-32"))
    return name


def naive(encoder, paths: list[Path], captions: list[str]) -> None:
    import cv2

    from tmor.pipeline.vl import frame_indices

    for path, text in zip(paths, captions, strict=True):
        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
        idx = frame_indices(len(frames), encoder.num_frames)
        size = (encoder.image_size, encoder.image_size)
        clip = np.stack([cv2.cvtColor(cv2.resize(frames[i], size), cv2.COLOR_BGR2RGB)
                         for i in idx])
        encoder.encode_video(clip[None])
        encoder.encode_text([text])


def stage_run(stage, samples) -> int:
    return sum(r.ok for r in stage.process(iter(samples)))


def limit(encoder, decoded: np.ndarray, captions: list[str], batch: int) -> None:
    for i in range(0, len(decoded), batch):
        encoder.encode_video(decoded[i:i + batch])
        encoder.encode_text(captions[i:i + batch])


def timed(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function; runs are interleaved so that load drift on a shared
    machine falls on all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="tiny | vitb32 | an encoder spec")
    ap.add_argument("--clips", type=int, default=26)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--decode-threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import torch

    from tmor.pipeline.embed import EmbedConfig, EmbedStage
    from tmor.pipeline.stage import Sample
    from tmor.pipeline.vl import load_encoder
    from tmor.pipeline.vl.clips import decode_clip

    files = sorted(p for p in VIDEOS.iterdir() if p.suffix in (".mp4", ".avi"))
    if not files:
        raise SystemExit(f"no clips under {VIDEOS}")
    paths = [files[i % len(files)] for i in range(args.clips)]
    captions = [f"a person {p.stem.replace('_', ' ')}." for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        encoder = load_encoder(model_spec(args.model, Path(tmp)), args.device)
    dev = getattr(encoder, "device", "?")
    print(f"model {encoder.model_id} dim {encoder.dim} device {dev} torch threads "
          f"{torch.get_num_threads()} clips {len(paths)} ({len(files)} distinct) "
          f"batch {args.batch_size} decode threads {args.decode_threads}")

    samples = [Sample(f"{i:016x}", {"key": f"{i:016x}"}, {"caption": {"caption": c}},
                      {"fetch": {"mp4": p.read_bytes()}})
               for i, (p, c) in enumerate(zip(paths, captions, strict=True))]
    cfg = EmbedConfig(batch_size=args.batch_size, decode_threads=args.decode_threads,
                      prefetch=4 * args.batch_size)
    stage = EmbedStage(cfg, encoder=encoder)
    decoded = np.stack([decode_clip(p.read_bytes(), encoder.num_frames, encoder.image_size)[0]
                        for p in files])
    decoded = decoded[[i % len(files) for i in range(len(paths))]]

    limit(encoder, decoded[: args.batch_size], captions[: args.batch_size], args.batch_size)
    assert stage_run(stage, samples[:2]) == 2  # warm-up
    t = timed({"stage": lambda: stage_run(stage, samples),
               "naive": lambda: naive(encoder, paths, captions),
               "limit": lambda: limit(encoder, decoded, captions, args.batch_size)}, args.repeats)
    t_stage, t_naive, t_limit = t["stage"], t["naive"], t["limit"]
    n = len(paths)
    for name, t in (("stage", t_stage), ("naive (a)", t_naive), ("limit (b)", t_limit)):
        print(f"{name:10s} {n / t:9.2f} clips/s  (median of {args.repeats}: {t:.2f} s)")
    print(f"stage / naive = {t_naive / t_stage:.2f}x   stage / limit = {t_limit / t_stage:.2f}x")


if __name__ == "__main__":
    main()
