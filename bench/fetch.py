"""Fetch throughput: 5 s clips out of 7-minute videos over an emulated link, four ways.

The setup of issue 14: two 7-minute 360p h264 mp4s (moov atom at the end, 2 s GOP, ~20 MB each,
made once at bench time by looping shared clips, cached in ``--cache``), 20 clips of 5 s (10 per
video), served by the range-capable test server on 127.0.0.1 with each connection capped at
``--rate-mbytes`` MB/s (default 4). Every method cuts with the same exact re-encode (h264 yuv420p,
the fetch stage's normalization), so only the way bytes are fetched differs:

- tmor:            ``FetchStage`` as configured by default (clips in flight inside the shard).
- tmor-sequential: ``FetchStage`` with one clip at a time (``clips_in_flight=1``).
- ffmpeg-ss-x2:    plain ``ffmpeg -ss S -i URL -t 5`` per clip, two at a time.
- whole-then-cut:  download each whole video (one connection), then cut its clips from disk.
- tmor-today:      (``--today TREE``) the fetch stage of an older checkout, for before / after.
- tmor-ytdlp:      (``--methods ...,tmor-ytdlp``) the stage with yt-dlp's --download-sections.

Bytes are what the server wrote to its sockets. ``frames_exact`` counts clips whose frame count
equals duration x fps (150). CPU seconds (this process and its ffmpeg / ffprobe children) are
reported beside wall seconds: on a shared machine the encodes compete for the cores. The clips'
own bytes (the source packets inside each range) are measured with ffprobe on the source files.
Medians of ``--runs`` runs, methods interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python bench/fetch.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from rangeserver import RangeServer  # noqa: E402

from tmor.pipeline.fetch import FetchConfig, FetchStage  # noqa: E402
from tmor.pipeline.fetch_ffmpeg import CutSpec, cut_argv, probe_clip, run_bounded  # noqa: E402
from tmor.pipeline.stage import Sample  # noqa: E402

# the shared clips beside the repository (../shared), or TMOR_SHARED_DATA/videos
VIDEOS = Path(os.environ.get("TMOR_SHARED_DATA", ROOT.parent / "shared" / "data")) / "videos"
SECONDS = 420.0
FPS = 30
CLIP_S = 5.0
SOURCES = {"long_a.mp4": "basketball_two_person.mp4", "long_b.mp4": "kinetics_arm_wrestling.mp4"}
# 10 clips per video, spread over it, starts off the 2 s keyframe grid
STARTS = [15.3 + 40.0 * i for i in range(10)]


def make_sources(folder: Path) -> None:
    """Loop shared clips into 7-minute 640x360 30 fps h264 mp4s (moov at the end, 2 s GOP)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in SOURCES.items():
        out = folder / name
        if out.exists():
            continue
        argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1",
                "-i", "file:" + str(VIDEOS / src), "-t", str(SECONDS), "-an",
                "-vf", f"scale=-2:360,fps={FPS}", "-c:v", "libx264", "-preset", "veryfast",
                "-b:v", "380k", "-maxrate", "500k", "-bufsize", "1000k",
                "-g", str(2 * FPS), "-keyint_min", str(2 * FPS), "-sc_threshold", "0",
                "-pix_fmt", "yuv420p", str(folder / ("tmp-" + name))]
        proc = run_bounded(argv, 1200)
        if proc.returncode != 0:
            raise SystemExit(f"could not make {name}: {proc.stderr[-300:]!r}")
        os.replace(folder / ("tmp-" + name), out)


def packets(path: Path) -> list[tuple[float, int, int, bool]]:
    """(pts, size, file offset, keyframe) of the source's video packets."""
    argv = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
            "packet=pts_time,size,pos,flags", "-of", "csv=p=0", "file:" + str(path)]
    out = []
    for line in run_bounded(argv, 300).stdout.decode().splitlines():
        t, size, pos, flags = (line.split(",") + ["", "", "", ""])[:4]
        if t and size and pos:
            out.append((float(t), int(size), int(pos), "K" in flags))
    return out


def own_bytes(pkts: list[tuple[float, int, int, bool]], a: float, b: float) -> tuple[int, int]:
    """(bytes of the packets in [a, b), bytes of the GOP before a that decoding needs)."""
    key = max((t for t, _, _, k in pkts if k and t <= a), default=0.0)
    own = sum(size for t, size, _, _ in pkts if a <= t < b)
    lead = sum(size for t, size, _, _ in pkts if key <= t < a)
    return own, lead


def top_atoms(path: Path) -> dict[str, tuple[int, int]]:
    """Top-level mp4 atoms: type -> (offset, size)."""
    atoms: dict[str, tuple[int, int]] = {}
    size_all = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size_all:
            f.seek(pos)
            head = f.read(16)
            size, kind = int.from_bytes(head[:4], "big"), head[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:
                size = size_all - pos
            atoms[kind] = (pos, size)
            pos += size
    return atoms


HEAD_BYTES = 256 * 1024  # the file's start, read when ffmpeg opens it (no clip starts there)


def where_bytes(log: list, folder: Path, own: int, lead: int) -> dict[str, int]:
    """Split what the server sent into the file's head (its first 256 KB: what ffmpeg reads when
    it opens the file and probes the first packets), its index (the moov atom at the end), and
    the media data between: the clips' own packets, the GOP before each cut that decoding needs,
    and the rest (read past a clip's end, or read twice)."""
    out = {"head": 0, "index": 0, "media": 0}
    for e in log:
        name = e.path.lstrip("/")
        if name not in SOURCES or not e.sent:
            continue
        atoms = top_atoms(folder / name)
        mdat_off, mdat_size = atoms["mdat"]
        media0, media1 = HEAD_BYTES, mdat_off + mdat_size
        first = 0
        if e.range:
            a = e.range.split("=", 1)[1].split("-")[0]
            first = int(a) if a else 0
        lo, hi = first, first + e.sent
        out["head"] += max(0, min(hi, media0) - lo)
        out["index"] += max(0, hi - max(lo, media1))
        out["media"] += max(0, min(hi, media1) - max(lo, media0))
    out["gop_before_cut"], out["clips_own"] = lead, own
    out["media_other"] = out.pop("media") - own - lead
    return out


def clip_list(server: RangeServer) -> list[Sample]:
    samples = []
    for name in SOURCES:
        for i, a in enumerate(STARTS):
            key = f"{Path(name).stem}_{i}"
            row = {"key": key, "source": server.url(name), "source_kind": "url",
                   "start": a, "end": a + CLIP_S}
            samples.append(Sample(key=key, row=row))
    return samples


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (ffmpeg, ffprobe)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _exact(frames: int) -> bool:
    return frames == round(CLIP_S * FPS)


def run_stage(samples: list[Sample], cfg: FetchConfig) -> tuple[int, int]:
    """(clips ok, clips frame-exact) through the fetch stage."""
    stage = FetchStage(cfg)
    stage.setup()
    try:
        results = list(stage.process(iter(samples)))
    finally:
        stage.teardown()
    bad = [str(r.error) for r in results if not r.ok]
    if bad:
        print(f"    tmor failures: {bad[:3]}", flush=True)
    ok = [r for r in results if r.ok]
    return len(ok), sum(_exact(int(r.record["frames"])) for r in ok)


def _cut(url: str, web: bool, start: float, out: str, cfg: FetchConfig) -> int:
    """Cut one clip with the stage's own encode; returns its frame count (0 on failure)."""
    spec = CutSpec(url=url, start=start, duration=CLIP_S, out_path=out, web=web, fps=cfg.fps,
                   fps_cap=cfg.fps_cap, short_side=cfg.short_side,
                   max_short_side=cfg.max_height, crf=cfg.crf, preset=cfg.preset,
                   threads=cfg.threads, io_timeout_s=cfg.io_timeout_s)
    proc = run_bounded(cut_argv(spec, cfg.ffmpeg), cfg.timeout_s)
    if proc.returncode != 0:
        return 0
    frames = probe_clip(out, cfg.timeout_s).frames
    os.remove(out)
    return frames


_TODAY = """
import json, sys
from tmor.pipeline.fetch import FetchConfig, FetchStage
from tmor.pipeline.stage import Sample
rows = json.load(sys.stdin)
stage = FetchStage(FetchConfig(timeout_s=300))
stage.setup()
try:
    res = [r for r in stage.process(iter([Sample(key=r["key"], row=r) for r in rows])) if r.ok]
finally:
    stage.teardown()
print(json.dumps([len(res), sum(int(r.record["frames"]) == FRAMES for r in res)]))
"""


def run_today(samples: list[Sample], tree: str) -> tuple[int, int]:
    """The fetch stage of another checkout (tmor before issue 14), in a child process."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": tree}
    code = _TODAY.replace("FRAMES", str(round(CLIP_S * FPS))) + (
        "assert 'clips_in_flight' not in FetchConfig.__dataclass_fields__, 'not the old tree'\n")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(
        [s.row for s in samples]).encode(), capture_output=True, env=env, timeout=1800,
        cwd=tree)  # not this checkout: `python -c` puts the working folder first on sys.path
    if proc.returncode != 0:
        raise SystemExit(f"tmor-today failed: {proc.stderr.decode()[-500:]}")
    ok, exact = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return ok, exact


def run_ffmpeg_ss(samples: list[Sample], cfg: FetchConfig) -> tuple[int, int]:
    """Plain ``ffmpeg -ss`` over HTTP per clip, two processes at a time."""
    tmp = tempfile.mkdtemp(prefix="tmor-bench-ss-")
    try:
        with ThreadPoolExecutor(2) as pool:
            frames = list(pool.map(
                lambda s: _cut(s.row["source"], True, s.row["start"],
                               os.path.join(tmp, s.key + ".mp4"), cfg), samples))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sum(f > 0 for f in frames), sum(_exact(f) for f in frames)


def run_whole(samples: list[Sample], cfg: FetchConfig) -> tuple[int, int]:
    """Download each whole source (one connection), then cut its clips from disk, two at a time."""
    tmp = tempfile.mkdtemp(prefix="tmor-bench-whole-")
    frames: list[int] = []
    try:
        by_source: dict[str, list[Sample]] = {}
        for s in samples:
            by_source.setdefault(s.row["source"], []).append(s)
        for n, (url, group) in enumerate(by_source.items()):
            path = os.path.join(tmp, f"src{n}.mp4")
            with urllib.request.urlopen(url, timeout=cfg.io_timeout_s) as resp, \
                    open(path, "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 16)
            with ThreadPoolExecutor(2) as pool:
                frames += pool.map(
                    lambda s, p=path: _cut("file:" + p, False, s.row["start"],
                                           os.path.join(tmp, s.key + ".mp4"), cfg), group)
            os.remove(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sum(f > 0 for f in frames), sum(_exact(f) for f in frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate-mbytes", type=float, default=4.0,
                    help="emulated link, MB/s per connection (0: loopback, unthrottled)")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay before each response")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tmor-bench-fetch"),
                    help="folder for the generated 7-minute sources (kept between runs)")
    ap.add_argument("--methods", default="tmor,tmor-sequential,ffmpeg-ss-x2,whole-then-cut")
    ap.add_argument("--preset", default=None,
                    help="x264 preset of every method's encode (default: the stage's); a cheap "
                         "one (ultrafast) shows the fetch itself where the encodes would bound "
                         "a small machine")
    ap.add_argument("--json", default=None, help="write the medians per method here")
    ap.add_argument("--today", default=None,
                    help="a checkout of tmor before issue 14 (e.g. git archive 493189b tmor): "
                         "adds method tmor-today, its fetch stage run in a child process")
    args = ap.parse_args()
    if not VIDEOS.is_dir():
        raise SystemExit(f"shared clips not found at {VIDEOS}")
    folder = Path(args.cache)
    t0 = time.perf_counter()
    make_sources(folder)
    print(f"sources ready in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{n} {(folder / n).stat().st_size / 1e6:.1f} MB" for n in SOURCES))
    ranges = [(a, a + CLIP_S) for a in STARTS]
    own = lead = 0
    for n in SOURCES:
        pkts = packets(folder / n)
        for a, b in ranges:
            o, g = own_bytes(pkts, a, b)
            own, lead = own + o, lead + g
    cfg = FetchConfig(timeout_s=300)
    if args.preset:
        cfg = dataclasses.replace(cfg, preset=args.preset)
    fields = {f.name for f in dataclasses.fields(FetchConfig)}
    methods = {
        "tmor": lambda s: run_stage(s, cfg),
        "tmor-sequential": lambda s: run_stage(
            s, dataclasses.replace(cfg, clips_in_flight=1) if "clips_in_flight" in fields
            else cfg),
        "tmor-ytdlp": lambda s: run_stage(  # yt-dlp's download-sections (not in the default list)
            s, dataclasses.replace(cfg, method="yt-dlp", direct_urls=False)),
        "ffmpeg-ss-x2": lambda s: run_ffmpeg_ss(s, cfg),
        "whole-then-cut": lambda s: run_whole(s, cfg),
    }
    if args.today:
        methods["tmor-today"] = lambda s: run_today(s, args.today)
    chosen = [m for m in args.methods.split(",") if m]
    if args.today and "tmor-today" not in chosen:
        chosen.insert(0, "tmor-today")
    rate = args.rate_mbytes * 1e6 if args.rate_mbytes > 0 else None
    runs: dict[str, list[dict]] = {m: [] for m in chosen}
    load = []
    with RangeServer(folder, rate_bps=rate, latency_s=args.latency_ms / 1000) as srv:
        samples = clip_list(srv)
        for run in range(args.runs):
            for name in chosen:
                srv.reset()
                load.append(os.getloadavg()[0])
                cpu0 = _cpu_seconds()
                t1 = time.perf_counter()
                ok, exact = methods[name](samples)
                dt = time.perf_counter() - t1
                cpu = _cpu_seconds() - cpu0
                sent = srv.bytes_sent()
                runs[name].append({"seconds": dt, "bytes": sent, "clips_ok": ok,
                                   "frames_exact": exact, "cpu_seconds": cpu,
                                   "where": where_bytes(srv.log, folder, own, lead)})
                print(f"  run {run + 1} {name:16s} {ok}/{len(samples)} ok, {exact} exact, "
                      f"{dt:6.2f} s, {sent / 1e6:6.2f} MB, cpu {cpu:6.1f} s", flush=True)
    out: dict[str, dict] = {}
    for name in chosen:
        r = runs[name]
        out[name] = {"seconds": statistics.median(x["seconds"] for x in r),
                     "bytes": int(statistics.median(x["bytes"] for x in r)),
                     "clips_ok": min(x["clips_ok"] for x in r),
                     "frames_exact": min(x["frames_exact"] for x in r),
                     "cpu_seconds": statistics.median(x["cpu_seconds"] for x in r), "runs": r}
    link = f"{args.rate_mbytes:g} MB/s per connection" if rate else "loopback, unthrottled"
    print(f"\n[{len(samples)} clips of {CLIP_S:g} s from {len(SOURCES)} x {SECONDS / 60:g} min "
          f"360p videos; {link}; x264 {cfg.preset}] median of {args.runs} runs; clips' own bytes "
          f"{own / 1e6:.2f} MB;"
          f" load avg {statistics.median(load):.1f} on {os.cpu_count()} cpus")
    print(f"  {'method':16s} {'seconds':>8s} {'MB':>7s} {'x own':>6s} {'ok':>4s} {'exact':>6s}"
          f" {'cpu s':>6s}")
    for name in chosen:
        m = out[name]
        print(f"  {name:16s} {m['seconds']:8.2f} {m['bytes'] / 1e6:7.2f} "
              f"{m['bytes'] / own:6.2f} {m['clips_ok']:4d} {m['frames_exact']:6d} "
              f"{m['cpu_seconds']:6.1f}")
    print(f"  where the bytes went (MB, last run): clips' own {own / 1e6:.2f}, GOP before each "
          f"cut {lead / 1e6:.2f}")
    for name in chosen:
        w = runs[name][-1]["where"]
        print(f"  {name:16s} head {w['head'] / 1e6:6.2f}  index (moov) {w['index'] / 1e6:6.2f}  "
              f"media beyond own + GOP {w['media_other'] / 1e6:6.2f}")
    if "ffmpeg-ss-x2" in out:
        ref = out["ffmpeg-ss-x2"]["seconds"]
        for name in chosen:
            print(f"  speed {name} vs ffmpeg-ss-x2: x{ref / out[name]['seconds']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"methods": out, "clips_own_bytes": own, "gop_before_cut_bytes": lead,
             "load_avg": statistics.median(load), "preset": cfg.preset,
             "cpus": os.cpu_count(), "link": link, "clips": len(samples)}, indent=1))


if __name__ == "__main__":
    main()
