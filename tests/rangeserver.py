"""A threaded HTTP server on 127.0.0.1 that honours Range requests, for fetch tests and benches.

Python's ``http.server`` ignores ``Range``, so range fetching would go untested with it. This server
serves one folder (GET, HEAD, ``Range: bytes=a-b | a- | -n`` -> 206 + Content-Range, 416, 404),
plus virtual files registered with :meth:`RangeServer.add_bytes` (e.g. the first 30% of a real mp4,
or a text file named ``.mp4``), forced statuses under ``/status/<code>/...``, and transfers cut
short under ``/drop/<n>/...`` (the headers promise the whole body, the connection closes after
``n`` body bytes). ``ignore_range=True`` makes it behave like Python's ``http.server`` and many
hosts: every GET is answered 200 with the whole file, without ``Accept-Ranges``. It counts the bytes
it actually wrote to the socket, per request, so a test can prove that only a range was read.

Run standalone: ``python tests/rangeserver.py DIR [--port N]``.
"""

from __future__ import annotations

import mimetypes
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_CHUNK = 16 * 1024
_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mkv": "video/x-matroska",
          ".webm": "video/webm", ".avi": "video/x-msvideo", ".mov": "video/quicktime"}


@dataclass
class RequestLog:
    """One served request: path, method, status, the Range header and bytes written."""

    method: str
    path: str
    status: int
    range: str | None
    sent: int
    user_agent: str
    cookie: str | None = None


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single ``bytes=`` range, None if unsatisfiable."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix: the last n bytes
        n = int(m.group(2))
        if n == 0:
            return None
        return max(0, size - n), size - 1
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(body=True)

    def _lookup(self, path: str) -> tuple[bytes | Path | None, int]:
        path = re.sub(r"^/drop/\d+/", "/", path)
        m = re.match(r"^/status/(\d{3})/", path)
        if m:
            return None, int(m.group(1))
        virtual = self.server.virtual.get(path)
        if virtual is not None:
            return virtual, 200
        root = self.server.root
        if root is None:
            return None, 404
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return None, 404
        return target, 200

    def _serve(self, body: bool) -> None:
        with self.server.lock:
            self.server.active += 1
            self.server.peak = max(self.server.peak, self.server.active)
        self._counted = True
        try:
            self._serve_counted(body)
        finally:
            self._uncount()

    def _uncount(self) -> None:
        """Stop counting this request as active: at the latest just before its last body bytes
        go out, so a client that has them all can start its next request uncounted."""
        if self._counted:
            self._counted = False
            with self.server.lock:
                self.server.active -= 1

    def _serve_counted(self, body: bool) -> None:
        if self.server.latency_s:
            time.sleep(self.server.latency_s)  # emulate a round trip before the first byte
        path = unquote(urlsplit(self.path).path)
        rng = self.headers.get("Range")
        ua = self.headers.get("User-Agent", "")
        cookie = self.headers.get("Cookie")
        drop = re.match(r"^/drop/(\d+)/", path)
        source, status = self._lookup(path)
        if source is None:
            self._send_status(status, body)
            self.server.record(RequestLog(self.command, path, status, rng, 0, ua, cookie))
            return
        if self.server.ignore_range:
            rng = None
        asked = self.headers.get("Range")
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        first, last = 0, size - 1
        if rng is not None:
            span = _parse_range(rng, size)
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.server.record(RequestLog(self.command, path, 416, rng, 0, ua, cookie))
                return
            first, last = span
            status = 206
        ext = os.path.splitext(path)[1].lower()
        ctype = _TYPES.get(ext) or self.server.content_types.get(path) or (
            mimetypes.guess_type(path)[0] or "application/octet-stream")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if not self.server.ignore_range:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last - first + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        sent = 0
        if body:
            cut = last if drop is None else min(last, first + int(drop.group(1)) - 1)
            sent = self._write_body(source, first, cut)
            if cut < last:  # a transfer cut short: close without the rest of the body
                self.close_connection = True
        self.server.record(RequestLog(self.command, path, status, asked, sent, ua, cookie))

    def _write_body(self, source: bytes | Path, first: int, last: int) -> int:
        sent = 0
        pos = first
        rate = self.server.rate_bps
        t0 = time.perf_counter()
        try:
            with _opener(source) as f:
                f.seek(first)
                while pos <= last:
                    chunk = f.read(min(_CHUNK, last - pos + 1))
                    if not chunk:
                        break
                    if pos + len(chunk) > last:
                        self._uncount()
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    pos += len(chunk)
                    if rate:  # emulate a link of rate_bps bytes/s per connection
                        ahead = sent / rate - (time.perf_counter() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True
        return sent

    def _send_status(self, status: int, body: bool) -> None:
        payload = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            try:
                self.wfile.write(payload)
            except OSError:
                self.close_connection = True


class _opener:
    """Open a file path or wrap bytes as a seekable reader."""

    def __init__(self, source: bytes | Path):
        self.source = source

    def __enter__(self):
        import io

        self.f = io.BytesIO(self.source) if isinstance(self.source, bytes) else open(  # noqa: SIM115
            self.source, "rb")
        return self.f

    def __exit__(self, *exc: object) -> None:
        self.f.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], root: Path | None, sndbuf: int | None,
                 rate_bps: float | None = None, latency_s: float = 0.0,
                 ignore_range: bool = False):
        self.root = root
        self.ignore_range = ignore_range
        self.sndbuf = sndbuf
        self.rate_bps = rate_bps
        self.latency_s = latency_s
        self.virtual: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.log: list[RequestLog] = []
        self.lock = threading.Lock()
        self.active = self.peak = 0  # requests being served now / at most at once
        super().__init__(addr, _Handler)

    def get_request(self):  # type: ignore[override]
        conn, addr = super().get_request()
        if self.sndbuf:
            # a small send buffer keeps "bytes written" close to "bytes the client read"
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        return conn, addr

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early (ffmpeg after a seek) are normal here

    def record(self, entry: RequestLog) -> None:
        with self.lock:
            self.log.append(entry)


class RangeServer:
    """Serve ``root`` on 127.0.0.1 in a background thread; use as a context manager.

    ``sndbuf`` sets SO_SNDBUF on accepted sockets (bytes), so that a client that stops reading
    early is not credited with megabytes sitting in kernel buffers. ``rate_bps`` (bytes/s per
    connection) and ``latency_s`` (delay before each response) emulate a real network link.
    ``ignore_range`` answers every GET with 200 and the whole file.
    """

    def __init__(self, root: str | os.PathLike | None, port: int = 0,
                 sndbuf: int | None = 16 * 1024, rate_bps: float | None = None,
                 latency_s: float = 0.0, ignore_range: bool = False):
        self._server = _Server(("127.0.0.1", port), Path(root).resolve() if root else None,
                               sndbuf, rate_bps, latency_s, ignore_range)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (quoted as given: pass already-escaped paths)."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add_bytes(self, path: str, data: bytes, content_type: str | None = None) -> str:
        """Serve ``data`` at ``path`` (a virtual file); returns its URL."""
        path = "/" + path.lstrip("/")
        self._server.virtual[path] = data
        if content_type:
            self._server.content_types[path] = content_type
        return self.url(path)

    @property
    def log(self) -> list[RequestLog]:
        with self._server.lock:
            return list(self._server.log)

    def bytes_sent(self, path: str | None = None) -> int:
        """Bytes written to clients, for one path (as requested, unquoted) or in total."""
        return sum(e.sent for e in self.log if path is None or e.path == "/" + path.lstrip("/"))

    @property
    def peak_requests(self) -> int:
        """The most requests served at the same time since the start or the last reset."""
        with self._server.lock:
            return self._server.peak

    def reset(self) -> None:
        with self._server.lock:
            self._server.log.clear()
            self._server.peak = self._server.active

    def start(self) -> RangeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--rate-bps", type=float, default=None, help="bytes/s per connection")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    ap.add_argument("--ignore-range", action="store_true", help="answer 200 + the whole file")
    args = ap.parse_args()
    server = RangeServer(args.root, port=args.port, sndbuf=None, rate_bps=args.rate_bps,
                         latency_s=args.latency, ignore_range=args.ignore_range)
    print(f"serving {args.root} at {server.url('')}", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
