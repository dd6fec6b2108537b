"""The ``fetch`` stage: download only each clip's time range, cut it exactly, normalize it.

Web sources are resolved once per source video with the yt-dlp Python API (format capped at
``max_height``, video-only preferred) and probed once with a 1-byte Range request. A source that
honours Range is read by one ffmpeg call per clip through the stage's loopback proxy
(tmor/pipeline/fetch_proxy.py: exact chunked Range reads, chunks shared by the source's clips,
headers and cookies kept out of ffmpeg's argv); ffmpeg seeks (``-ss`` before ``-i``), cuts
frame-accurately and normalizes in the same encode (h264 yuv420p mp4, +faststart, fps / short
side, no audio by default). A source that ignores Range, or is small enough that reading it whole
costs no more, is downloaded once (bounded by ``max_source_mb``), its clips cut from the local
file, and the file deleted. Each ledger row names the path its clip took (``fetch_path``). Up to
``clips_in_flight`` clips of a shard are fetched at once (results in any order), with at most
``per_host_connections`` upstream connections per host. Local files (and file:// URLs) are read
only under the ``allow_local`` roots.

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
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from tmor.config import rules
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
from tmor.pipeline.fetch_http import HostLimiter, download, probe
from tmor.pipeline.fetch_proxy import ClipSession, RangeProxy, SourceCache
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

#: x264 presets (ffmpeg -preset)
X264_PRESETS = ("ultrafast | superfast | veryfast | faster | fast | medium | slow | slower | "
                "veryslow | placebo")


@rules(max_height="> 0", fps="> 0", fps_cap=">= 0", short_side="> 0", timeout_s="> 0",
       io_timeout_s="> 0", retries=">= 0", backoff_s=">= 0", rate_limit_backoff_s=">= 0",
       rate_limit_backoff_max_s=">= 0", crf="[0, 51]", preset=X264_PRESETS, threads=">= 0",
       method="ffmpeg | yt-dlp", clips_in_flight=">= 1", per_host_connections=">= 1",
       max_source_mb="> 0", small_source_mb=">= 0", whole_mb_per_clip=">= 0",
       range_chunk_kb=">= 1", readahead_chunks=">= 0", source_cache_mb=">= 0",
       recv_buffer_kb=">= 0")
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
    clips_in_flight: int = 8  # clips of a shard fetched at once (threads waiting on ffmpeg)
    per_host_connections: int = 8  # upstream connections open at once per host
    max_source_mb: float = 2048.0  # bound of a whole-file download (servers without Range)
    small_source_mb: float = 1.0  # read whole at or below this size (0: never) ...
    whole_mb_per_clip: float = 0.5  # ... or below this much per clip of the source
    range_chunk_kb: int = 32  # granularity of Range reads through the proxy
    readahead_chunks: int = 0  # chunks fetched ahead of a clip that reads on (high-latency links)
    source_cache_mb: int = 32  # chunks kept per source for its other clips
    recv_buffer_kb: int = 16  # ffmpeg's socket buffer from the proxy (0: the kernel's default)


#: where a clip's bytes came from, as recorded in its ledger row (``fetch_path``)
PATH_RANGE, PATH_WHOLE_NO_RANGE, PATH_WHOLE_SMALL = "range", "whole-no-range", "whole-small"
PATH_LOCAL, PATH_YTDLP, PATH_STREAM = "local", "yt-dlp", "stream"


def _is_stream(resolved: Resolved) -> bool:
    """HLS / DASH manifests: ffmpeg must follow their segment URLs itself."""
    protocol = str(resolved.meta.get("protocol") or "")
    path = resolved.url.split("?", 1)[0].lower()
    return protocol.startswith(("m3u8", "http_dash", "dash", "f4m", "ism")) or path.endswith(
        (".m3u8", ".mpd"))


@dataclass
class _Clip:
    sample: Sample
    start: float
    end: float | None


@dataclass
class _Source:
    """One source video of a shard while its clips are in flight."""

    clips: list[_Clip]
    resolved: Resolved | None = None
    path: str = PATH_RANGE
    token: str | None = None  # proxy route (range path)
    local_file: str | None = None  # whole-file download (deleted when the last clip is done)
    source_bytes: int | None = None
    resolve_s: float = 0.0
    limited: SampleError | None = None
    expected: int = 0  # results owed for this source (its samples)
    prepared: bool = False  # resolved (and downloaded, on a whole path): its clips were tried
    reported: set[str] = field(default_factory=set)


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
        self._pause_until = 0.0
        # made in setup (locks, sockets and threads do not pickle to workers)
        self._lock: threading.Lock | None = None
        self._limiter: HostLimiter | None = None
        self._proxy: RangeProxy | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def setup(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="tmor-fetch-")
        self._versions = {"yt_dlp": ytdlp_version(), "ffmpeg": ffmpeg_version(self.config.ffmpeg)}
        self._lock = threading.Lock()
        self._limiter = HostLimiter(self.config.per_host_connections)
        self._proxy = RangeProxy()

    def teardown(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._limiter is not None:
            self._limiter.close()
            self._limiter = None
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
        """Group the shard's samples by source; keep up to ``clips_in_flight`` clips (and as many
        open sources) in flight; yield each result as it finishes."""
        if self._tmp is None:
            self.setup()
        groups: dict[tuple[str, str], list[Sample]] = {}
        for sample in samples:
            kind = str(sample.row.get("source_kind") or "url")
            groups.setdefault((str(sample.row.get("source", "")), kind), []).append(sample)
        total = sum(len(g) for g in groups.values())
        width = max(1, int(self.config.clips_in_flight))
        events: queue.Queue[Result | None] = queue.Queue()
        todo = deque(groups.items())
        open_sources = yielded = 0
        pool = ThreadPoolExecutor(width, thread_name_prefix="tmor-fetch")
        try:
            while yielded < total:
                while todo and open_sources < width:
                    (source, kind), group = todo.popleft()
                    open_sources += 1
                    pool.submit(self._open_source, source, kind, group, pool, events)
                event = events.get()
                if event is None:  # a source closed: room for the next one
                    open_sources -= 1
                    continue
                yielded += 1
                yield event
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # ---- one source ------------------------------------------------------------------------

    def _open_source(self, source: str, kind: str, group: list[Sample], pool: ThreadPoolExecutor,
                     events: queue.Queue) -> None:
        """Resolve and probe a source (download it if it must be read whole), then queue its
        clips. Puts one Result per sample and then None on ``events``, whatever happens."""
        src = _Source(clips=[], expected=len(group))
        try:
            bad: list[Result] = []
            for sample in group:
                try:
                    src.clips.append(_Clip(sample, *self._range(sample)))
                except SampleError as err:
                    bad.append(Result(key=sample.key, error=err, record={"seconds": 0.0}))
            for result in bad:
                self._emit(src, events, result)
            if not src.clips:
                return
            self._wait_pause()
            t0 = time.perf_counter()
            try:
                self._with_retries(lambda: self._prepare(src, source, kind))
            except SampleError as err:
                if err.error_class is ErrorClass.RATE_LIMITED:
                    src.limited = err  # the strike is counted when the source closes
                seconds = time.perf_counter() - t0
                for clip in src.clips:
                    self._emit(src, events, Result(key=clip.sample.key, error=err,
                                                   record={"seconds": seconds}))
                return
            src.resolve_s = time.perf_counter() - t0
            src.prepared = True
            for clip in src.clips:
                pool.submit(self._clip_job, src, clip, events)
        except BaseException as exc:  # a bug or a shut-down pool: fail what is left, transient
            err = SampleError(ErrorClass.TRANSIENT,
                              f"fetch failed: {classify_exception(exc).message}")
            for sample in group:
                if sample.key not in src.reported:
                    self._emit(src, events, Result(key=sample.key, error=err))

    def _prepare(self, src: _Source, source: str, kind: str) -> None:
        """Resolve once; probe Range once; pick the path; download whole if that is the path."""
        cfg = self.config
        self._cleanup_source(src)  # a retried attempt starts clean
        resolved = src.resolved = self._resolve(source, kind)
        if not resolved.web:
            src.path = PATH_LOCAL
            return
        if cfg.method == "yt-dlp" and resolved.info is not None:
            src.path = PATH_YTDLP
            return
        if _is_stream(resolved):
            src.path = PATH_STREAM
            return
        assert self._limiter is not None and self._proxy is not None and self._tmp is not None
        found = probe(self._limiter, resolved.url, resolved.headers, cfg.io_timeout_s)
        # small: reading it whole costs about what its clips' range reads would (0: never)
        small = max(cfg.small_source_mb, cfg.whole_mb_per_clip * len(src.clips)) * 1e6 \
            if cfg.small_source_mb > 0 else 0
        if found.ranges and found.size is not None and found.size > small:
            src.path = PATH_RANGE
            src.source_bytes = found.size
            cache = SourceCache(found.url, resolved.headers, found.size, self._limiter,
                                chunk_bytes=max(4, cfg.range_chunk_kb) * 1024,
                                max_bytes=cfg.source_cache_mb * 1024 * 1024,
                                timeout_s=cfg.io_timeout_s, readahead=cfg.readahead_chunks)
            src.token = self._proxy.add_source(cache)
            return
        src.path = PATH_WHOLE_SMALL if found.ranges else PATH_WHOLE_NO_RANGE
        fd, local = tempfile.mkstemp(prefix="source-", dir=self._tmp)
        os.close(fd)
        src.local_file = local
        src.source_bytes = download(self._limiter, found.url, resolved.headers, local,
                                    int(cfg.max_source_mb * 1e6), cfg.io_timeout_s)

    def _cleanup_source(self, src: _Source) -> None:
        if src.token is not None and self._proxy is not None:
            self._proxy.drop_source(src.token)
            src.token = None
        if src.local_file is not None:
            if os.path.exists(src.local_file):
                os.remove(src.local_file)
            src.local_file = None

    def _emit(self, src: _Source, events: queue.Queue, result: Result) -> None:
        """Report one clip; after the source's last clip, clean up and report the source closed."""
        assert self._lock is not None
        with self._lock:
            src.reported.add(result.key)
            last = len(src.reported) == src.expected
        events.put(result)
        if last:
            self._cleanup_source(src)
            if src.limited is not None:
                self._strike()  # back off before the next source
            elif src.prepared:
                with self._lock:
                    self._rate_strikes = 0
            events.put(None)

    def _clip_job(self, src: _Source, clip: _Clip, events: queue.Queue) -> None:
        sample = clip.sample
        if src.limited is not None:  # the source is rate limited: leave its clips for a retry
            self._emit(src, events, Result(key=sample.key, error=src.limited,
                                           record={"seconds": 0.0}))
            return
        self._wait_pause()
        t1 = time.perf_counter()
        try:
            assert src.resolved is not None
            members, record, flags = self._with_retries(
                lambda: self._cut(sample, src, clip.start, clip.end))
        except BaseException as exc:  # noqa: BLE001 - every failure is this clip's result
            err = classify_exception(exc)
            if err.error_class is ErrorClass.RATE_LIMITED:
                src.limited = err
            self._emit(src, events, Result(key=sample.key, error=err,
                                           record={"seconds": time.perf_counter() - t1,
                                                   "fetch_path": src.path}))
            return
        record.update(seconds=time.perf_counter() - t1, resolve_seconds=src.resolve_s)
        self._emit(src, events, Result(key=sample.key, members=members, record=record,
                                       flags=flags))

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

    def _strike(self) -> None:
        """A rate-limited source: pause new work of this worker, doubling per strike."""
        cfg = self.config
        assert self._lock is not None
        with self._lock:
            delay = min(cfg.rate_limit_backoff_max_s,
                        cfg.rate_limit_backoff_s * 2**self._rate_strikes)
            self._rate_strikes += 1
            self._pause_until = max(self._pause_until, time.monotonic() + delay)

    def _wait_pause(self) -> None:
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _ytdlp_section(self, key: str, src: Resolved, start: float, end: float | None) -> str:
        """The alternative cutter: yt-dlp downloads the section itself (see fetch_ytdlp)."""
        from tmor.pipeline.fetch_ytdlp import download_section, write_info_json

        assert self._tmp is not None and src.info is not None
        info_json = write_info_json(src.info, os.path.join(self._tmp, f"{key}.info.json"))
        return download_section(info_json, src.format_id, start, end,
                                os.path.join(self._tmp, f"{key}.section"),
                                timeout_s=self.config.timeout_s,
                                socket_timeout_s=self.config.io_timeout_s,
                                ffmpeg=self.config.ffmpeg)

    def _cut(self, sample: Sample, source: _Source, start: float,
             end: float | None) -> tuple[dict[str, bytes], dict[str, Any], list[str]]:
        """Cut one clip along its source's path; upstream failures seen by the proxy win over
        what ffmpeg then makes of the short input."""
        session: ClipSession | None = None
        clip_token = proxy_url = None
        if source.path == PATH_RANGE:
            assert self._proxy is not None and source.token is not None
            proxy_url, clip_token, session = self._proxy.clip_url(source.token)
        try:
            return self._cut_from(sample, source, start, end, session, proxy_url)
        except SampleError as err:
            if session is not None and session.errors:
                raise session.errors[0] from err
            raise
        finally:
            if clip_token is not None and self._proxy is not None:
                self._proxy.end_clip(clip_token)

    def _cut_from(self, sample: Sample, source: _Source, start: float, end: float | None,
                  session: ClipSession | None, proxy_url: str | None,
                  ) -> tuple[dict[str, bytes], dict[str, Any], list[str]]:
        cfg = self.config
        src = source.resolved
        assert src is not None
        flags: list[str] = []
        if src.duration is not None and start >= src.duration:
            raise SampleError(ErrorClass.BAD_INPUT,
                              f"range outside the video: start {start} >= duration {src.duration}")
        assert self._tmp is not None
        out_path = os.path.join(self._tmp, f"{sample.key}.mp4")
        section: str | None = None
        spec = CutSpec(url=src.url, start=start, duration=None if end is None else end - start,
                       out_path=out_path, headers=None, web=src.web, fps=cfg.fps,
                       fps_cap=cfg.fps_cap, short_side=cfg.short_side,
                       max_short_side=cfg.max_height, keep_audio=cfg.keep_audio, crf=cfg.crf,
                       preset=cfg.preset, threads=cfg.threads, io_timeout_s=cfg.io_timeout_s)
        if proxy_url is not None:  # ffmpeg reads through the proxy: no headers on its argv
            spec.url, spec.web = proxy_url, True
            spec.recv_buffer = cfg.recv_buffer_kb * 1024 or None
        elif source.local_file is not None:
            spec.url, spec.web = "file:" + source.local_file, False
        elif source.path == PATH_STREAM:  # ffmpeg follows the manifest's segments itself;
            # its -headers are on its argv, so the Cookie header is left out (a known limit)
            spec.headers = {k: v for k, v in src.headers.items() if k.lower() != "cookie"}
        elif src.web and source.path != PATH_YTDLP:
            raise SampleError(ErrorClass.TRANSIENT, f"no input for path {source.path}")
        try:
            if source.path == PATH_YTDLP:
                section = self._ytdlp_section(sample.key, src, start, end)
                spec.url, spec.web = "file:" + section, False
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
            if session is not None:  # counted by the proxy: chunks this clip pulled upstream
                session.settle(cfg.io_timeout_s)
                nbytes = session.bytes_pulled
            elif source.local_file is not None:  # the whole file, shared by the source's clips
                nbytes = round((source.source_bytes or 0) / max(1, len(source.clips)))
            elif section:  # what yt-dlp fetched is not counted by it; its section file stands in
                nbytes = os.path.getsize(section)
            else:
                nbytes = bytes_read(log)
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
            "method": "yt-dlp" if section else "ffmpeg", "fetch_path": source.path,
            **{k: v for k, v in src.meta.items() if k not in ("url",)},
        }
        record = {"bytes_downloaded": nbytes, "duration": info.duration, "fps": info.fps,
                  "width": info.width, "height": info.height, "frames": info.frames,
                  "format_id": src.format_id, "source_duration": src_duration,
                  "bytes_out": len(mp4), "fetch_path": source.path,
                  "source_bytes": source.source_bytes}
        return {"mp4": mp4, "json": json.dumps(meta, sort_keys=True).encode()}, record, flags
