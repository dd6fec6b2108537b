"""A loopback HTTP server that ffmpeg reads range sources through.

ffmpeg opens ``http://127.0.0.1:<port>/<source token>/<clip token>`` and seeks in it with Range
requests as it would on the real server. The proxy answers from a per-source cache of aligned
chunks and fetches a missing chunk upstream with an exact ``Range: bytes=a-b`` request
(:mod:`tmor.pipeline.fetch_http`, per-host connection cap, kept-alive connections). So:

- the source's HTTP headers and cookies stay in this process: ffmpeg's argv holds only the
  loopback URL (random tokens, valid while the clip is cut);
- the chunks every clip of a source reads (the file's head, the moov atom at the end, the index)
  are fetched once and shared by the source's clips;
- no connection streams ahead of the reader: a clip pulls the chunks it touches (and, with
  ``readahead``, the next ones once it reads on past a chunk, for links where a round trip per
  chunk shows); when ffmpeg stops after its last frame, nothing more is fetched;
- bytes pulled are counted per clip, and an upstream failure is recorded for the clip, so a
  truncated transfer is reported as transient rather than as the broken input ffmpeg then sees.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tmor.errors import SampleError
from tmor.pipeline.fetch_errors import classify_exception
from tmor.pipeline.fetch_http import HostLimiter, read_range

SEND_BUFFER = 4 * 1024


@dataclass
class ClipSession:
    """What one clip's reads cost and what went wrong upstream."""

    bytes_pulled: int = 0
    cache_hits: int = 0
    errors: list[SampleError] = field(default_factory=list)
    pending: int = 0  # read-ahead fetches still running
    done: threading.Condition = field(default_factory=threading.Condition)

    def settle(self, timeout_s: float) -> None:
        """Wait for this clip's read-ahead fetches, so that its byte count is final."""
        with self.done:
            self.done.wait_for(lambda: self.pending == 0, timeout_s)


class SourceCache:
    """Aligned chunks of one range-capable source, fetched once, LRU-bounded."""

    def __init__(self, url: str, headers: dict[str, str], size: int, limiter: HostLimiter, *,
                 chunk_bytes: int, max_bytes: int, timeout_s: float, readahead: int = 1):
        self.url, self.headers, self.size = url, headers, size
        self.limiter, self.chunk, self.timeout_s = limiter, chunk_bytes, timeout_s
        self.readahead = readahead  # chunks fetched ahead of a reader that streams on
        self.max_chunks = max(4, max_bytes // chunk_bytes)
        self._lock = threading.Lock()
        self._chunks: OrderedDict[int, bytes] = OrderedDict()
        self._inflight: dict[int, threading.Event] = {}
        self.bytes_pulled = 0

    def prefetch(self, index: int, session: ClipSession) -> None:
        """Fetch chunk ``index`` in the background unless it is cached or on its way."""
        if index * self.chunk >= self.size:
            return
        with self._lock:
            if index in self._chunks or index in self._inflight:
                return

        def run() -> None:
            try:
                self.get(index, session)
            except Exception:  # noqa: BLE001 - the reader, if it comes, fetches and reports it
                pass
            finally:
                with session.done:
                    session.pending -= 1
                    session.done.notify_all()

        with session.done:
            session.pending += 1
        threading.Thread(target=run, name="tmor-fetch-readahead", daemon=True).start()

    def get(self, index: int, session: ClipSession) -> bytes:
        """Chunk ``index``: from the cache, or fetched (once, however many clips ask at once)."""
        while True:
            with self._lock:
                data = self._chunks.get(index)
                if data is not None:
                    self._chunks.move_to_end(index)
                    session.cache_hits += 1
                    return data
                waiting = self._inflight.get(index)
                if waiting is None:
                    mine = self._inflight[index] = threading.Event()
                    break
            waiting.wait(self.timeout_s * 2)  # another clip is fetching it; then look again
        try:
            first = index * self.chunk
            last = min(self.size, first + self.chunk) - 1
            data = read_range(self.limiter, self.url, self.headers, first, last, self.timeout_s)
            with self._lock:
                self._chunks[index] = data
                while len(self._chunks) > self.max_chunks:
                    self._chunks.popitem(last=False)
                self.bytes_pulled += len(data)
            session.bytes_pulled += len(data)
            return data
        finally:
            with self._lock:
                self._inflight.pop(index, None)
            mine.set()


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        found = self.server.lookup(self.path)
        if found is None:
            self.send_error(404)
            return
        cache, session = found
        size = cache.size
        first, last = 0, size - 1
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if not m or not (m.group(1) or m.group(2)):
                self.send_error(416)
                return
            if m.group(1):
                first = int(m.group(1))
                last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                first = max(0, size - int(m.group(2)))
            if first >= size or last < first:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        if rng:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if not body:
            return
        pos = first
        streamed = 0  # chunk boundaries this reader crossed: it reads on, not just probes
        while pos <= last:
            index = pos // cache.chunk
            if streamed and cache.readahead:
                for ahead in range(1, cache.readahead + 1):
                    if (index + ahead) * cache.chunk <= last:
                        cache.prefetch(index + ahead, session)
            try:
                data = cache.get(index, session)
            except SampleError as err:
                session.errors.append(err)
                self.close_connection = True  # ffmpeg sees a short body and fails the clip
                return
            except Exception as exc:  # noqa: BLE001 - recorded for the clip, never raised here
                session.errors.append(classify_exception(exc))
                self.close_connection = True
                return
            offset = pos - index * cache.chunk
            piece = data[offset: offset + (last - pos + 1)]
            try:
                self.wfile.write(piece)
            except OSError:  # ffmpeg stopped reading (a seek, or its last frame): stop here
                self.close_connection = True
                return
            pos += len(piece)
            streamed += 1


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.routes: dict[str, SourceCache] = {}
        self.sessions: dict[str, ClipSession] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # ffmpeg hangs up mid-body after every seek

    def get_request(self):  # type: ignore[no-untyped-def]
        conn, addr = super().get_request()
        # a small send buffer: the kernel must not hold (and the proxy not fetch) much more
        # than ffmpeg has asked for; what it buffers would be read upstream for nothing
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        return conn, addr

    def lookup(self, path: str) -> tuple[SourceCache, ClipSession] | None:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2:
            return None
        with self.lock:
            cache, session = self.routes.get(parts[0]), self.sessions.get(parts[1])
        return None if cache is None or session is None else (cache, session)


class RangeProxy:
    """The stage's loopback proxy: register a source, hand ffmpeg a clip URL, read the costs."""

    def __init__(self) -> None:
        self._server = _ProxyServer()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="tmor-fetch-proxy", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def add_source(self, cache: SourceCache) -> str:
        token = secrets.token_urlsafe(12)
        with self._server.lock:
            self._server.routes[token] = cache
        return token

    def drop_source(self, token: str) -> None:
        with self._server.lock:
            self._server.routes.pop(token, None)

    def clip_url(self, source_token: str, ext: str = "") -> tuple[str, str, ClipSession]:
        """(URL for ffmpeg, clip token, its session) for one clip of a registered source."""
        token = secrets.token_urlsafe(12)
        session = ClipSession()
        with self._server.lock:
            self._server.sessions[token] = session
        suffix = f"/{token}" + (f"?.{ext}" if ext else "")
        return f"http://127.0.0.1:{self.port}/{source_token}{suffix}", token, session

    def end_clip(self, token: str) -> None:
        with self._server.lock:
            self._server.sessions.pop(token, None)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
