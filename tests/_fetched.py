"""Real clips as the fetch stage leaves them: a source's first seconds through fetch's own ffmpeg
encode with its default settings (tests and benchmarks measure what the corpus will hold)."""

from __future__ import annotations

from pathlib import Path


def fetch_encode(src: Path, dst: Path, seconds: float, seek_keyframes: bool = True,
                 timeout_s: float = 300.0) -> Path:
    """Encode ``src``'s first ``seconds`` to ``dst`` like ``tmor-data fetch``; returns ``dst``."""
    from tmor.pipeline.fetch import FetchConfig
    from tmor.pipeline.fetch_ffmpeg import CutSpec, cut_argv, run_bounded

    cfg = FetchConfig()
    spec = CutSpec(url="file:" + str(Path(src).resolve()), start=0.0, duration=seconds,
                   out_path=str(dst), web=False, fps_cap=cfg.fps_cap,
                   max_short_side=cfg.max_height, crf=cfg.crf, preset=cfg.preset,
                   seek_keyframes=seek_keyframes)
    proc = run_bounded(cut_argv(spec), timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace")[-2000:])
    return Path(dst)
