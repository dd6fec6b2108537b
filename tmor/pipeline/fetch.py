"""The ``fetch`` stage: download only each clip's time range, cut it exactly, normalize it.

Web sources are resolved once per source video with the yt-dlp Python API (format capped at
``max_height``, video-only preferred); then one ffmpeg call per clip seeks with HTTP Range
requests (``-ss`` before ``-i``), cuts frame-accurately and normalizes in the same encode (h264
yuv420p mp4, +faststart, fps / short side, no audio by default). Local files (and file:// URLs)
are read only under the ``allow_local`` roots.

Why tmor drives ffmpeg itself by default instead of yt-dlp's ``download_ranges`` +
``force_keyframes_at_cuts``: run in-process, that path starts yt-dlp's own ffmpeg outside any
process group we could kill on a timeout, and it re-encodes once to force keyframes, so a second
encode is needed to normalize; a single ffmpeg per clip gives exact cuts in one encode, a killable
process group with a timeout, and the byte count of what it read. The yt-dlp path is available
for comparison as ``method="yt-dlp"`` (tmor/pipeline/fetch_ytdlp.py: yt-dlp in a child process
group, reusing the one resolution per source through ``--load-info-json``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from tmor.errors import ErrorClass, SampleError
from tmor.pipeline.fetch_errors import classify_exception, classify_text
from tmor.pipeline.fetch_ffmpeg import (
    CutSpec,
    bytes_read,
    cut_argv,
    error_excerpt,
    ffmpeg_version,
    input_duration,
    probe_clip,
    run_bounded,
)
from tmor.pipeline.fetch_resolve import (
    Resolved,
    is_direct_video_url,
    local_path,
    resolve_local,
    resolve_web,
    web_url,
    ytdlp_version,
)
from tmor.pipeline.stage import Result, Sample, Stage


@dataclass
class FetchConfig:
    """Options of ``tmor-data fetch`` (each is also a YAML field)."""

    max_height: int | None = 360  # yt-dlp format cap; also caps the output's short side
    fps: float | None = None  # None: keep the source rate, capped at fps_cap
    fps_cap: float = 30.0
    short_side: int | None = None  # scale so that the short side is exactly this
    keep_audio: bool = False
    timeout_s: float = 300.0  # per subprocess and per yt-dlp resolution
    io_timeout_s: float = 30.0  # socket / HTTP read timeout
    allow_local: list[str] = field(default_factory=list)  # roots for local paths and file://
    retries: int = 2  # in-process retries of transient failures
    backoff_s: float = 2.0  # transient retry backoff: backoff_s * 2**attempt
    rate_limit_backoff_s: float = 30.0  # worker sleep after a rate limit, doubled per strike
    rate_limit_backoff_max_s: float = 900.0
    crf: int = 23
    preset: str = "veryfast"
    threads: int = 0  # ffmpeg encoder threads (0: ffmpeg decides)
    direct_urls: bool = True  # http(s) URLs ending in a video extension skip yt-dlp
    method: str = "ffmpeg"  # "ffmpeg": one exact range encode; "yt-dlp": download_sections + 2nd
    ytdlp_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"cookiefile": "..."}
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if out != out else out  # NaN (pandas' missing value) -> None


class FetchStage(Stage):
    """Plan rows -> ``<key>.mp4`` + ``<key>.json`` (see docs/contracts.md)."""

    name = "fetch"
    needs: dict[str, tuple[str, ...]] = {}

    def __init__(self, config: FetchConfig | None = None):
        self.config = config or FetchConfig()
        if self.config.method not in ("ffmpeg", "yt-dlp"):
            raise ValueError(f"FetchConfig.method must be 'ffmpeg' or 'yt-dlp', "
                             f"not {self.config.method!r}")
        self._tmp: str | None = None
        self._versions: dict[str, str] = {}
        self._rate_strikes = 0
        self._info_json_for: Resolved | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def setup(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="tmor-fetch-")
        self._versions = {"yt_dlp": ytdlp_version(), "ffmpeg": ffmpeg_version(self.config.ffmpeg)}

    def teardown(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def card(self) -> dict[str, Any]:
        if not self._versions:
            self._versions = {"yt_dlp": ytdlp_version(),
                              "ffmpeg": ffmpeg_version(self.config.ffmpeg)}
        return {"config": asdict(self.config), **self._versions}

    # ---- processing ------------------------------------------------------------------------

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        """Group the shard's samples by source, resolve each source once, cut each clip."""
        if self._tmp is None:
            self.setup()
        groups: dict[tuple[str, str], list[Sample]] = {}
        for sample in samples:
            kind = str(sample.row.get("source_kind") or "url")
            groups.setdefault((str(sample.row.get("source", "")), kind), []).append(sample)
        for (source, kind), group in groups.items():
            yield from self._fetch_source(source, kind, group)

    def _fetch_source(self, source: str, kind: str, group: list[Sample]) -> Iterator[Result]:
        t0 = time.perf_counter()
        pending: list[tuple[Sample, float, float | None]] = []
        for sample in group:
            try:
                pending.append((sample, *self._range(sample)))
            except SampleError as err:
                yield Result(key=sample.key, error=err, record={"seconds": 0.0})
        if not pending:
            return
        try:
            resolved = self._with_retries(lambda: self._resolve(source, kind))
        except SampleError as err:
            if err.error_class is ErrorClass.RATE_LIMITED:
                self._rate_limit_sleep()
            seconds = time.perf_counter() - t0
            for sample, _, _ in pending:
                yield Result(key=sample.key, error=err, record={"seconds": seconds})
            return
        resolve_s = time.perf_counter() - t0
        limited: SampleError | None = None
        for sample, start, end in pending:
            if limited is not None:  # the source is rate limited: leave its clips for a retry
                yield Result(key=sample.key, error=limited, record={"seconds": 0.0})
                continue
            t1 = time.perf_counter()
            try:
                members, record, flags = self._with_retries(
                    lambda s=sample, a=start, b=end: self._cut(s, resolved, a, b))
            except SampleError as err:
                if err.error_class is ErrorClass.RATE_LIMITED:
                    limited = err
                yield Result(key=sample.key, error=err,
                             record={"seconds": time.perf_counter() - t1})
                continue
            record.update(seconds=time.perf_counter() - t1, resolve_seconds=resolve_s)
            yield Result(key=sample.key, members=members, record=record, flags=flags)
        if limited is not None:
            self._rate_limit_sleep()  # back off before the next source
        else:
            self._rate_strikes = 0

    @staticmethod
    def _range(sample: Sample) -> tuple[float, float | None]:
        start = _float(sample.row.get("start")) or 0.0
        end = _float(sample.row.get("end"))
        if start < 0:
            raise SampleError(ErrorClass.BAD_INPUT, f"negative start {start}")
        if end is not None and end <= start:
            raise SampleError(ErrorClass.BAD_INPUT, f"end <= start ({end} <= {start})")
        return start, end

    def _resolve(self, source: str, kind: str) -> Resolved:
        cfg = self.config
        path = local_path(source) if (kind == "local" or source.startswith("file://")) else None
        if path is not None:
            return resolve_local(path, cfg.allow_local)
        if kind == "local":
            raise SampleError(ErrorClass.PERMANENT, f"not a local path: {source!r}")
        url = web_url(source, kind)
        if cfg.direct_urls and kind != "youtube" and is_direct_video_url(url):
            return Resolved(url=url, web=True, format_id="direct", extractor="direct")
        return resolve_web(url, max_height=cfg.max_height, timeout_s=cfg.timeout_s,
                           socket_timeout_s=cfg.io_timeout_s, extra_opts=cfg.ytdlp_options)

    def _with_retries(self, fn):  # type: ignore[no-untyped-def]
        """Call ``fn``; retry transient failures with exponential backoff up to ``retries``."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - every failure is classified
                err = classify_exception(exc)
                if err.error_class is not ErrorClass.TRANSIENT or attempt >= self.config.retries:
                    raise err from exc
                time.sleep(self.config.backoff_s * 2**attempt)
                attempt += 1

    def _rate_limit_sleep(self) -> None:
        cfg = self.config
        delay = min(cfg.rate_limit_backoff_max_s, cfg.rate_limit_backoff_s * 2**self._rate_strikes)
        self._rate_strikes += 1
        time.sleep(delay)

    def _ytdlp_section(self, key: str, src: Resolved, start: float, end: float | None) -> str:
        """The alternative cutter: yt-dlp downloads the section itself (see fetch_ytdlp)."""
        from tmor.pipeline.fetch_ytdlp import download_section, write_info_json

        assert self._tmp is not None and src.info is not None
        info_json = os.path.join(self._tmp, "source.info.json")
        if self._info_json_for is not src:
            write_info_json(src.info, info_json)
            self._info_json_for = src
        return download_section(info_json, src.format_id, start, end,
                                os.path.join(self._tmp, f"{key}.section"),
                                timeout_s=self.config.timeout_s,
                                socket_timeout_s=self.config.io_timeout_s,
                                ffmpeg=self.config.ffmpeg)

    def _cut(self, sample: Sample, src: Resolved, start: float,
             end: float | None) -> tuple[dict[str, bytes], dict[str, Any], list[str]]:
        cfg = self.config
        flags: list[str] = []
        if src.duration is not None and start >= src.duration:
            raise SampleError(ErrorClass.BAD_INPUT,
                              f"range outside the video: start {start} >= duration {src.duration}")
        assert self._tmp is not None
        out_path = os.path.join(self._tmp, f"{sample.key}.mp4")
        section: str | None = None
        spec = CutSpec(url=src.url, start=start, duration=None if end is None else end - start,
                       out_path=out_path, headers=src.headers, web=src.web, fps=cfg.fps,
                       fps_cap=cfg.fps_cap, short_side=cfg.short_side,
                       max_short_side=cfg.max_height, keep_audio=cfg.keep_audio, crf=cfg.crf,
                       preset=cfg.preset, threads=cfg.threads, io_timeout_s=cfg.io_timeout_s)
        try:
            if cfg.method == "yt-dlp" and src.info is not None:
                section = self._ytdlp_section(sample.key, src, start, end)
                spec.url, spec.web, spec.headers = "file:" + section, False, None
                spec.start, spec.duration = 0.0, None
            proc = run_bounded(cut_argv(spec, cfg.ffmpeg), cfg.timeout_s)
            log = proc.stderr.decode(errors="replace")
            src_duration = src.duration if section else (input_duration(log) or src.duration)
            if proc.returncode != 0:
                msg = error_excerpt(log)
                raise SampleError(classify_text(msg, default=ErrorClass.BAD_INPUT),
                                  f"ffmpeg exit {proc.returncode}: {msg}")
            if src_duration is not None and start >= src_duration:
                raise SampleError(ErrorClass.BAD_INPUT,
                                  f"range outside the video: start {start} >= {src_duration}")
            info = probe_clip(out_path, cfg.timeout_s, cfg.ffprobe)
            if info.frames == 0 or info.duration <= 0:
                raise SampleError(ErrorClass.BAD_INPUT, "zero frames / zero duration output")
            expected = (end if end is not None else src_duration or start + info.duration) - start
            if src_duration is not None and end is not None and end > src_duration:
                expected = src_duration - start
                flags.append("range_clipped")
            tolerance = 2.0 / info.fps if info.fps else 0.1
            if info.duration < expected - tolerance:
                raise SampleError(
                    ErrorClass.BAD_INPUT,
                    f"truncated: output {info.duration:.3f}s of {expected:.3f}s expected"
                    f" ({error_excerpt(log, 300)})")
            with open(out_path, "rb") as f:
                mp4 = f.read()
            # what yt-dlp fetched is not counted by it; its section file's size stands in
            nbytes = os.path.getsize(section) if section else bytes_read(log)
        finally:
            for path in (out_path, section):
                if path and os.path.exists(path):
                    os.remove(path)
        meta = {
            "key": sample.key, "source": sample.row.get("source"),
            "source_kind": sample.row.get("source_kind"), "start": start, "end": end,
            "fps": info.fps, "width": info.width, "height": info.height,
            "duration": info.duration, "frames": info.frames, "codec": info.codec,
            "format_id": src.format_id, "extractor": src.extractor,
            "source_duration": src_duration, "bytes_downloaded": nbytes,
            "yt_dlp": self._versions.get("yt_dlp"), "ffmpeg": self._versions.get("ffmpeg"),
            "method": "yt-dlp" if section else "ffmpeg",
            **{k: v for k, v in src.meta.items() if k not in ("url",)},
        }
        record = {"bytes_downloaded": nbytes, "duration": info.duration, "fps": info.fps,
                  "width": info.width, "height": info.height, "frames": info.frames,
                  "format_id": src.format_id, "source_duration": src_duration,
                  "bytes_out": len(mp4)}
        return {"mp4": mp4, "json": json.dumps(meta, sort_keys=True).encode()}, record, flags
