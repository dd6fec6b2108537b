"""Real clips as the fetch stage leaves them: a source's first seconds through fetch's own ffmpeg
encode with its default settings (tests and benchmarks measure what the corpus will hold)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cached_name(src: Path, seconds: float, seek_keyframes: bool = True) -> str:
    """The file name of ``src``'s encoded first ``seconds`` in a ``$TMOR_FETCHED`` folder."""
    return f"{Path(src).stem}-{seconds:g}s{'' if seek_keyframes else '-nk'}.mp4"


def fetch_encode(src: Path, dst: Path, seconds: float, seek_keyframes: bool = True,
                 timeout_s: float = 300.0) -> Path:
    """Encode ``src``'s first ``seconds`` to ``dst`` like ``tmor-data fetch``; returns ``dst``.

    When ``$TMOR_FETCHED`` (a folder) holds that clip already encoded (:func:`cached_name`;
    ``PREPARE=1 bash bench/gpu.sh`` fills it for a GPU machine without ffmpeg), it is copied
    instead."""
    from tmor.pipeline.fetch import FetchConfig
    from tmor.pipeline.fetch_ffmpeg import CutSpec, cut_argv, run_bounded

    cache = os.environ.get("TMOR_FETCHED")
    if cache and (Path(cache) / cached_name(src, seconds, seek_keyframes)).is_file():
        shutil.copyfile(Path(cache) / cached_name(src, seconds, seek_keyframes), dst)
        return Path(dst)
    cfg = FetchConfig()
    spec = CutSpec(url="file:" + str(Path(src).resolve()), start=0.0, duration=seconds,
                   out_path=str(dst), web=False, fps_cap=cfg.fps_cap,
                   max_short_side=cfg.max_height, crf=cfg.crf, preset=cfg.preset,
                   seek_keyframes=seek_keyframes)
    proc = run_bounded(cut_argv(spec), timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace")[-2000:])
    return Path(dst)
