"""Fetch throughput: tmor's range fetch vs download-whole-then-cut (the video2dataset way).

Both sides fetch the same clip list (2-3 s ranges out of the longest shared clips) from the
range-capable test server on 127.0.0.1, resolve each source once through yt-dlp, and cut each clip
with the same exact re-encode (h264 yuv420p, same fps / size options):

- tmor:       ``FetchStage``: one ffmpeg per clip reads only the range over HTTP (Range requests).
- tmor-ytdlp: ``FetchStage(method="yt-dlp")``: yt-dlp's ``--download-sections`` +
              ``--force-keyframes-at-cuts`` per clip, then the normalizing encode (``--ytdlp``).
- baseline:   yt-dlp downloads each whole video to disk, then ffmpeg cuts every clip from it.

Two clip lists: the shared clips as they are (5-10 s: little for range requests to save), and
3-minute sources looped from them at bench time (the YouTube case: a short clip out of a long
video). Bytes are counted by the server (bytes it wrote to sockets). The link is emulated
(default 40 Mbit/s per connection, 20 ms per request; ``--rate-mbps 0``: loopback). Medians of
``--runs`` runs, ratios printed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fetch.py [--runs 3] [--rate-mbps 40] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rangeserver import RangeServer  # noqa: E402

from tmor.pipeline.fetch import FetchConfig, FetchStage  # noqa: E402
from tmor.pipeline.fetch_ffmpeg import CutSpec, cut_argv, probe_clip, run_bounded  # noqa: E402
from tmor.pipeline.fetch_resolve import format_selector  # noqa: E402
from tmor.pipeline.stage import Sample  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "data" / "videos"
# the longest shared clips (5-10 s) with 2-2.5 s ranges spread over each
SHORT = {
    "basketball_two_person.mp4": [(0.5, 3.0), (7.0, 9.5)],
    "kinetics_arm_wrestling.mp4": [(0.5, 3.0), (7.0, 9.5)],
    "kinetics_tai_chi_2.mp4": [(4.0, 6.5)],
    "fallfree_fall_1_55_3.avi": [(0.5, 2.5), (3.5, 5.5)],
    "ucf101_apply_eye_makeup.avi": [(3.5, 6.0)],
}
# long sources made at bench time by looping shared clips (YouTube-like: 2 s GOP, one with the
# moov atom at the front, one with it at the end), 2.5 s ranges spread over each
LONG_SECONDS = 180.0
LONG = {
    "long_faststart.mp4": [(20.0, 22.5), (65.0, 67.5), (110.0, 112.5), (150.0, 152.5)],
    "long_moov_at_end.mp4": [(20.0, 22.5), (65.0, 67.5), (110.0, 112.5), (150.0, 152.5)],
}
_LOOPED = {"long_faststart.mp4": "kinetics_tai_chi_2.mp4",
           "long_moov_at_end.mp4": "basketball_two_person.mp4"}


def make_long_sources(folder: Path) -> None:
    """Loop shared clips into LONG_SECONDS-long h264 mp4s (not kept: a temp folder)."""
    for name, src in _LOOPED.items():
        argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1",
                "-i", "file:" + str(VIDEOS / src), "-t", str(LONG_SECONDS), "-an",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", "60",
                "-pix_fmt", "yuv420p"]
        if "faststart" in name:
            argv += ["-movflags", "+faststart"]
        proc = run_bounded(argv + [str(folder / name)], 600)
        if proc.returncode != 0:
            raise SystemExit(f"could not make {name}: {proc.stderr[-300:]!r}")


def clip_list(server: RangeServer, sources: dict[str, list[tuple[float, float]]]) -> list[Sample]:
    samples = []
    for name, ranges in sources.items():
        for i, (a, b) in enumerate(ranges):
            key = f"{Path(name).stem}_{i}"
            row = {"key": key, "source": server.url(name), "source_kind": "url",
                   "start": a, "end": b}
            samples.append(Sample(key=key, row=row))
    return samples


def run_tmor(samples: list[Sample], cfg: FetchConfig) -> tuple[int, int]:
    """(clips ok, output bytes) through the fetch stage."""
    return _run_stage(samples, cfg)


def run_tmor_ytdlp(samples: list[Sample], cfg: FetchConfig) -> tuple[int, int]:
    """The same stage with yt-dlp's own section download as the cutter."""
    return _run_stage(samples, dataclasses.replace(cfg, method="yt-dlp"))


def _run_stage(samples: list[Sample], cfg: FetchConfig) -> tuple[int, int]:
    stage = FetchStage(cfg)
    stage.setup()
    try:
        results = list(stage.process(iter(samples)))
    finally:
        stage.teardown()
    bad = [str(r.error) for r in results if not r.ok]
    if bad:
        raise SystemExit(f"tmor fetch failed: {bad[:3]}")
    return len(results), sum(len(r.members["mp4"]) for r in results)


def run_baseline(samples: list[Sample], cfg: FetchConfig) -> tuple[int, int]:
    """Download each whole source with yt-dlp, then cut each clip from the local file."""
    import yt_dlp

    tmp = tempfile.mkdtemp(prefix="tmor-bench-baseline-")
    ok = out_bytes = 0
    try:
        by_source: dict[str, list[Sample]] = {}
        for s in samples:
            by_source.setdefault(s.row["source"], []).append(s)
        for n, (url, group) in enumerate(by_source.items()):
            opts = {"quiet": True, "no_warnings": True, "noprogress": True,
                    "format": format_selector(cfg.max_height), "cachedir": False,
                    "outtmpl": os.path.join(tmp, f"src{n}.%(ext)s"), "retries": 0,
                    "socket_timeout": cfg.io_timeout_s}
            with yt_dlp.YoutubeDL(opts) as ydl:
                info = ydl.extract_info(url, download=True)
                path = ydl.prepare_filename(info)
            for s in group:
                out = os.path.join(tmp, f"{s.key}.mp4")
                spec = CutSpec(url="file:" + os.path.abspath(path), start=s.row["start"],
                               duration=s.row["end"] - s.row["start"], out_path=out, web=False,
                               fps=cfg.fps, fps_cap=cfg.fps_cap, short_side=cfg.short_side,
                               max_short_side=cfg.max_height, crf=cfg.crf, preset=cfg.preset,
                               threads=cfg.threads)
                proc = run_bounded(cut_argv(spec, cfg.ffmpeg), cfg.timeout_s)
                if proc.returncode != 0:
                    raise SystemExit(f"baseline cut failed: {proc.stderr[-300:]!r}")
                probe_clip(out, cfg.timeout_s)  # same per-clip measurement as tmor
                out_bytes += os.path.getsize(out)
                ok += 1
                os.remove(out)
            os.remove(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ok, out_bytes


def bench(folder: Path, sources: dict[str, list[tuple[float, float]]], title: str,
          rate_mbps: float, latency_ms: float, runs: int, ytdlp: bool) -> None:
    rate = rate_mbps * 1e6 / 8 if rate_mbps > 0 else None
    link = f"{rate_mbps:g} Mbit/s per connection, {latency_ms:g} ms/request" if rate \
        else "loopback, unthrottled"
    cfg = FetchConfig(direct_urls=False, retries=0, timeout_s=120)
    methods = [("tmor", run_tmor), ("baseline", run_baseline)]
    if ytdlp:
        methods.insert(1, ("tmor-ytdlp", run_tmor_ytdlp))
    stats: dict[str, dict[str, list[float]]] = {name: {} for name, _ in methods}
    with RangeServer(folder, rate_bps=rate, latency_s=latency_ms / 1000) as srv:
        samples = clip_list(srv, sources)
        whole = sum((folder / name).stat().st_size for name in sources)
        run_tmor(samples[:1], cfg)  # warm-up: yt-dlp's first extraction loads its extractors
        for run in range(runs):
            for name, fn in methods:
                srv.reset()
                t0 = time.perf_counter()
                n, _ = fn(samples, cfg)
                dt = time.perf_counter() - t0
                sent = srv.bytes_sent()
                st = stats[name]
                st.setdefault("seconds", []).append(dt)
                st.setdefault("clips_s", []).append(n / dt)
                st.setdefault("bytes", []).append(sent)
                print(f"  run {run + 1} {name:10s} {n} clips {dt:6.2f} s {n / dt:6.2f} clips/s "
                      f"{sent / 1e6:7.2f} MB sent", flush=True)
    med = {k: {m: statistics.median(v) for m, v in st.items()} for k, st in stats.items()}
    print(f"\n[{title}; {link}] {len(samples)} clips from {len(sources)} videos "
          f"({whole / 1e6:.2f} MB whole files), median of {runs} runs")
    print(f"  {'method':10s} {'clips/s':>8s} {'seconds':>8s} {'MB sent':>8s}")
    for name, _ in methods:
        m = med[name]
        print(f"  {name:10s} {m['clips_s']:8.2f} {m['seconds']:8.2f} {m['bytes'] / 1e6:8.2f}")
    b = med["baseline"]
    for name, _ in methods[:-1]:
        t = med[name]
        print(f"  ratio {name}/baseline: clips/s x{t['clips_s'] / b['clips_s']:.2f}, "
              f"bytes x{t['bytes'] / b['bytes']:.2f}", flush=True)
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate-mbps", type=float, default=40.0,
                    help="emulated link, Mbit/s per connection (0: loopback, unthrottled)")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--lists", default="short,long", help="clip lists to run: short,long")
    ap.add_argument("--ytdlp", action="store_true", help="also time method='yt-dlp'")
    args = ap.parse_args()
    if not VIDEOS.is_dir():
        raise SystemExit(f"shared clips not found at {VIDEOS}")
    lists = args.lists.split(",")
    latency = args.latency_ms if args.rate_mbps > 0 else 0.0
    if "short" in lists:
        bench(VIDEOS, SHORT, "shared clips, 5-10 s", args.rate_mbps, latency, args.runs,
              args.ytdlp)
    if "long" in lists:
        with tempfile.TemporaryDirectory(prefix="tmor-bench-long-") as tmp:
            t0 = time.perf_counter()
            make_long_sources(Path(tmp))
            print(f"made {len(LONG)} looped {LONG_SECONDS:g} s sources in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            bench(Path(tmp), LONG, f"looped {LONG_SECONDS:g} s sources", args.rate_mbps,
                  latency, args.runs, args.ytdlp)


if __name__ == "__main__":
    main()
