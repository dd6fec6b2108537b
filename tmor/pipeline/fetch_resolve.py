"""Turn a plan row's source into something ffmpeg can read: a media URL with its HTTP headers
(resolved once per source video through the yt-dlp Python API) or an allowed local path.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tmor.errors import ErrorClass, SampleError

VIDEO_EXTENSIONS = frozenset(
    "mp4 m4v mov mkv webm avi flv ts mts m2ts mpg mpeg wmv ogv 3gp".split())
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


@dataclass
class Resolved:
    """A readable media location for one source video."""

    url: str  # what ffmpeg opens: http(s) URL, or "file:" + absolute real path
    web: bool
    format_id: str
    headers: dict[str, str] = field(default_factory=dict)
    duration: float | None = None
    extractor: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # title, description, webpage_url, ...
    info: dict[str, Any] | None = None  # yt-dlp's sanitized info dict (web sources via yt-dlp)


def ytdlp_version() -> str:
    from yt_dlp.version import __version__

    return __version__


def web_url(source: str, kind: str) -> str:
    """The URL yt-dlp is given: bare 11-character YouTube ids become watch URLs."""
    if kind == "youtube" and _YOUTUBE_ID.match(source):
        return f"https://www.youtube.com/watch?v={source}"
    return source


def is_direct_video_url(url: str) -> bool:
    """True for http(s) URLs whose path ends in a video file extension."""
    parts = urlsplit(url)
    ext = os.path.splitext(unquote(parts.path))[1].lstrip(".").lower()
    return parts.scheme in ("http", "https") and ext in VIDEO_EXTENSIONS


def local_path(source: str) -> str | None:
    """The filesystem path of a local source (plain path or file:// URL), else None."""
    if source.startswith("file://"):
        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise SampleError(ErrorClass.PERMANENT, f"file:// URL with a host: {source!r}")
        return unquote(parts.path)
    if "://" in source:
        return None
    return source


def resolve_local(path: str, allow_local: list[str]) -> Resolved:
    """An existing regular file under one of the ``allow_local`` roots (real paths, so a
    symlink cannot escape a root), else a permanent error."""
    if not allow_local:
        raise SampleError(ErrorClass.PERMANENT,
                          f"local input {path!r} refused: not under --allow-local roots (none)")
    try:
        real = Path(path).resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        raise SampleError(ErrorClass.PERMANENT, f"No such file or directory: {path!r}") from exc
    roots = [Path(r).resolve() for r in allow_local]
    if not any(real == root or real.is_relative_to(root) for root in roots):
        raise SampleError(ErrorClass.PERMANENT,
                          f"local input {path!r} refused: not under --allow-local roots")
    if not real.is_file():
        raise SampleError(ErrorClass.BAD_INPUT, f"not a regular file: {path!r}")
    return Resolved(url="file:" + str(real), web=False, format_id="local", extractor="local")


def format_selector(max_height: int | None) -> str:
    """yt-dlp format string: a single http(s) stream (no merge), video-only preferred, capped at
    ``max_height`` (formats of unknown height allowed), smallest formats as the last resort."""
    h = f"[height<=?{max_height}]" if max_height else ""
    return "/".join([f"bv{h}[protocol^=http]", f"b{h}[protocol^=http]", f"bv{h}", f"b{h}",
                     "wv", "w"])


def format_sort(max_height: int | None) -> list[str]:
    """yt-dlp's sort among the formats :func:`format_selector` admits: the tallest within
    ``max_height``, then the fewest bytes (size, then bitrate), not yt-dlp's codec preference:
    fetch re-encodes every clip, so the source's codec only costs link time."""
    return ([f"res:{max_height}"] if max_height else []) + ["+size", "+br"]


def _ytdlp_extract(url: str, opts: dict[str, Any]) -> dict[str, Any]:
    """yt-dlp's info dict of ``url`` (first playlist entry), with ``_tmor_cookie``: the Cookie
    header its cookie jar holds for the media URL (sent only by tmor's own HTTP client)."""
    import yt_dlp

    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl.extract_info(url, download=False)
        info = ydl.sanitize_info(info)
        while info.get("_type") in ("playlist", "multi_video"):
            entries = [e for e in (info.get("entries") or []) if e]
            if not entries:
                raise SampleError(ErrorClass.PERMANENT, f"empty playlist: {url}")
            info = entries[0]
        if info.get("url"):
            info["_tmor_cookie"] = ydl.cookiejar.get_cookie_header(info["url"]) or None
    return info


def resolve_web(url: str, *, max_height: int | None, timeout_s: float, socket_timeout_s: float,
                extra_opts: dict[str, Any] | None = None) -> Resolved:
    """Resolve ``url`` with yt-dlp's ``extract_info(download=False)``, bounded by ``timeout_s``.

    The extraction runs in a daemon thread: yt-dlp's own sockets time out after
    ``socket_timeout_s``, and should it hang anyway, the caller gets a transient timeout error
    while the abandoned thread dies with the worker.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise SampleError(ErrorClass.PERMANENT, f"Unsupported URL scheme: {url!r}")
    opts: dict[str, Any] = {
        "quiet": True, "no_warnings": True, "noprogress": True, "noplaylist": True,
        "skip_download": True, "socket_timeout": socket_timeout_s, "retries": 0,
        "extractor_retries": 0, "cachedir": False, "format": format_selector(max_height),
        "format_sort": format_sort(max_height), "logger": _QuietLogger(),
    }
    opts.update(extra_opts or {})
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["info"] = _ytdlp_extract(url, opts)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="tmor-ytdlp-resolve", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise SampleError(ErrorClass.TRANSIENT,
                          f"timeout: yt-dlp resolution ran past {timeout_s:g}s: {url}")
    if "error" in box:
        raise box["error"]
    info = box["info"]
    media = info.get("url")
    if not media:
        raise SampleError(ErrorClass.PERMANENT, f"yt-dlp found no single-file format: {url}")
    if urlsplit(media).scheme not in ("http", "https"):
        raise SampleError(ErrorClass.PERMANENT, f"Unsupported media URL scheme: {media[:80]!r}")
    meta = {k: info.get(k) for k in ("id", "title", "description", "uploader", "webpage_url",
                                     "protocol", "ext", "vcodec", "acodec")
            if info.get(k) is not None}
    headers = dict(info.get("http_headers") or {})
    cookie = info.pop("_tmor_cookie", None)
    if cookie:  # fetch_http sends it; it never reaches a command line
        headers["Cookie"] = cookie
    return Resolved(url=media, web=True, format_id=str(info.get("format_id") or ""),
                    headers=headers,
                    duration=float(info["duration"]) if info.get("duration") else None,
                    extractor=str(info.get("extractor_key") or info.get("extractor") or ""),
                    meta=meta, info=info)


class _QuietLogger:
    """Swallow yt-dlp's log lines: errors reach us as exceptions."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass
