"""The alternative cutter: yt-dlp's own range download (``--download-sections`` +
``--force-keyframes-at-cuts``), then tmor's normalizing encode of the downloaded section.

Kept for comparison (``FetchConfig.method = "yt-dlp"``, see bench/fetch.py). yt-dlp runs as a
child process (``python -m yt_dlp``) so its ffmpeg shares a process group that the timeout kills,
and it reuses the per-source resolution through ``--load-info-json`` instead of resolving again.
It costs two encodes per clip (yt-dlp's forced-keyframe re-encode, then the normalization), which
is why the default cutter drives ffmpeg directly.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
from typing import Any

from tmor.errors import ErrorClass, SampleError
from tmor.pipeline.fetch_errors import classify_text
from tmor.pipeline.fetch_ffmpeg import run_bounded


def write_info_json(info: dict[str, Any], path: str) -> str:
    """Save a resolved (sanitized) info dict for ``--load-info-json``."""
    with open(path, "w") as f:
        json.dump(info, f)
    return path


def download_section(info_json: str, format_id: str, start: float, end: float | None,
                     out_stem: str, *, timeout_s: float, socket_timeout_s: float,
                     ffmpeg: str = "ffmpeg") -> str:
    """Download ``[start, end)`` of the resolved video with yt-dlp; returns the file's path."""
    section = f"*{start:.6f}-{'inf' if end is None else f'{end:.6f}'}"
    argv = [sys.executable, "-m", "yt_dlp", "--quiet", "--no-warnings", "--no-progress",
            "--no-playlist", "--no-cache-dir", "--socket-timeout", f"{socket_timeout_s:g}",
            "--retries", "0", "--download-sections", section, "--force-keyframes-at-cuts",
            "--ffmpeg-location", shutil.which(ffmpeg) or ffmpeg, "-f", format_id,
            "--load-info-json", info_json,
            "-o", out_stem + ".%(ext)s"]
    proc = run_bounded(argv, timeout_s)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-1500:]
        raise SampleError(classify_text(err, default=ErrorClass.BAD_INPUT),
                          f"yt-dlp section download failed: {err}")
    found = [p for p in glob.glob(glob.escape(out_stem) + ".*")
             if not p.endswith((".part", ".json", ".ytdl"))]
    if not found:
        raise SampleError(ErrorClass.BAD_INPUT, "yt-dlp wrote no section file")
    return max(found, key=os.path.getsize)
