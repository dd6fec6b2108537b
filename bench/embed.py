"""Throughput of the embed stage (clips/s) against (a) a naive loop and (b) the encoder alone,
and the frames it decodes per clip.

    OMP_NUM_THREADS=1 .venv/bin/python bench/embed.py [--model tiny|vitb32|SPEC] [--clips 26]
        [--json PATH]

Inputs: the real clips of ../shared/data/videos, the first ``--seconds`` of each encoded by the
fetch stage's own ffmpeg command (so with the keyframes fetch places), repeated to ``--clips``.
stage: ``EmbedStage.process`` on mp4 bytes (8 frames at the ViCLIP stride, each reached by a seek
       to its keyframe, in threads, resized in the decoder, batched forward of video and caption).
full:  the same stage decoding each clip from its start (``seek=False``: the path before seeking,
       and the one clips without placed keyframes take).
naive: per clip, OpenCV decodes every frame, keeps 8 at the same stride, cv2.resize to 224,
       then one forward for that clip's video and one for its text (on the first
       ``--naive-clips`` clips: a full decode and two forwards per clip is the slowest method
       by far; its rate is clips/s all the same).
limit: the encoder's forward alone (video + text) on the same clips pre-decoded, in batches.
Each is run ``--repeats`` times (interleaved); medians and ratios are printed. Inputs: the
real clips of ../shared/data/videos, repeated to ``--clips``. Random-weight models go through
the same checkpoint loading as real weights.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/_fetched.py
from _fetched import fetch_encode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = Path(os.environ.get("TMOR_DATA") or ROOT.parent / "shared" / "data") / "videos"


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


def decoded_per_clip(stage, samples) -> float:
    """Mean frames the decoder produced per clip (the ledger's ``frames_decoded``)."""
    results = [r for r in stage.process(iter(samples))]
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return statistics.mean(r.record["frames_decoded"] for r in results)


def limit(encoder, decoded: np.ndarray, captions: list[str], batch: int) -> None:
    for i in range(0, len(decoded), batch):
        encoder.encode_video(decoded[i:i + batch])
        encoder.encode_text(captions[i:i + batch])


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fns: dict, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall seconds and CPU seconds (this process, all threads) of each function; runs are
    interleaved so that load drift on a shared machine falls on all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, c = time.perf_counter(), cpu_seconds()
            fn()
            times[name].append(time.perf_counter() - t)
            cpus[name].append(cpu_seconds() - c)
    return ({k: statistics.median(v) for k, v in times.items()},
            {k: statistics.median(v) for k, v in cpus.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="tiny | vitb32 | an encoder spec")
    ap.add_argument("--clips", type=int, default=26)
    ap.add_argument("--naive-clips", type=int, default=None,
                    help="clips the naive loop runs on (default: all of --clips)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--decode-threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=2.5,
                    help="seconds of each clip (2.5: every shared clip is at least this long)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()
    raw = sorted(p for p in VIDEOS.iterdir() if p.suffix in (".mp4", ".avi"))
    if not raw:
        raise SystemExit(f"no clips under {VIDEOS}")
    tmp = Path(tempfile.mkdtemp(prefix="tmor_bench_embed_"))
    try:
        run(args, raw, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, raw: list[Path], tmp: Path) -> None:
    import torch

    from tmor.pipeline.embed import EmbedConfig, EmbedStage
    from tmor.pipeline.stage import Sample
    from tmor.pipeline.vl import load_encoder
    from tmor.pipeline.vl.clips import decode_clip

    files = [fetch_encode(p, tmp / f"{p.stem}.mp4", args.seconds) for p in raw]
    encoder = load_encoder(model_spec(args.model, tmp), args.device)
    data = {p: p.read_bytes() for p in files}
    paths = [files[i % len(files)] for i in range(args.clips)]
    captions = [f"a person {p.stem.replace('_', ' ')}." for p in paths]
    dev = getattr(encoder, "device", "?")
    print(f"model {encoder.model_id} dim {encoder.dim} device {dev} torch threads "
          f"{torch.get_num_threads()} clips {len(paths)} ({len(files)} distinct, "
          f"{args.seconds:g} s each, fetch-encoded) batch {args.batch_size} decode threads "
          f"{args.decode_threads}")

    samples = [Sample(f"{i:016x}", {"key": f"{i:016x}"}, {"caption": {"caption": c}},
                      {"fetch": {"mp4": data[p]}})
               for i, (p, c) in enumerate(zip(paths, captions, strict=True))]

    def stage_of(seek: bool) -> EmbedStage:
        cfg = EmbedConfig(batch_size=args.batch_size, decode_threads=args.decode_threads,
                          prefetch=4 * args.batch_size, seek=seek)
        return EmbedStage(cfg, encoder=encoder)

    stage, full = stage_of(True), stage_of(False)
    decoded = np.stack([decode_clip(data[p], encoder.num_frames, encoder.image_size)[0]
                        for p in files])
    decoded = decoded[[i % len(files) for i in range(len(paths))]]
    distinct = samples[:len(files)]
    per_clip_after = decoded_per_clip(stage, distinct)
    per_clip_before = decoded_per_clip(full, distinct)

    limit(encoder, decoded[: args.batch_size], captions[: args.batch_size], args.batch_size)
    assert stage_run(stage, samples[:2]) == 2  # warm-up
    n_naive = min(args.naive_clips or len(paths), len(paths))
    t, cpu = timed({"stage": lambda: stage_run(stage, samples),
               "full": lambda: stage_run(full, samples),
               "naive": lambda: naive(encoder, paths[:n_naive], captions[:n_naive]),
               "limit": lambda: limit(encoder, decoded, captions, args.batch_size)},
              args.repeats)
    n = len(paths)
    clips = {"stage": n, "full": n, "naive": n_naive, "limit": n}
    for name in ("stage", "full", "naive", "limit"):
        k = clips[name]
        print(f"{name:6s} {k / t[name]:9.2f} clips/s  (median of {args.repeats}: "
              f"{t[name]:.2f} s for {k})   {k / cpu[name]:9.2f} clips per CPU-second")
    print(f"frames decoded per clip: {per_clip_before:.1f} decoding from the start, "
          f"{per_clip_after:.1f} seeking (uses {encoder.num_frames}; goal <= "
          f"{2 * encoder.num_frames})")
    naive_rate = n_naive / t["naive"]
    print(f"stage / full = {t['full'] / t['stage']:.2f}x   stage / naive = "
          f"{n / t['stage'] / naive_rate:.2f}x   stage / limit = {t['limit'] / t['stage']:.2f}x")
    out = {"bench": "embed", "model": encoder.model_id, "device": str(dev),
           "clips": n, "seconds_per_clip": args.seconds, "batch_size": args.batch_size,
           "frames_used_per_clip": encoder.num_frames,
           "frames_decoded_per_clip": round(per_clip_after, 2),
           "frames_decoded_per_clip_full_decode": round(per_clip_before, 2),
           "pipeline_clips_per_s": round(n / t["stage"], 2),
           "full_decode_clips_per_s": round(n / t["full"], 2),
           "naive_clips_per_s": round(naive_rate, 2), "naive_clips": n_naive,
           "forward_clips_per_s": round(n / t["limit"], 2),
           "pipeline_over_forward": round(t["limit"] / t["stage"], 3),
           "pipeline_clips_per_cpu_s": round(n / cpu["stage"], 2),
           "full_decode_clips_per_cpu_s": round(n / cpu["full"], 2)}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
