"""HTTP for the fetch stage, done in Python (so headers and cookies never reach a command line):
the Range probe of a source, exact byte-range reads over kept-alive connections with a per-host
connection cap, and the bounded whole-file download for servers that ignore Range.

Every failure is raised as a :class:`SampleError` with an honest class: a 4xx refusal is
permanent (429 rate limited), 5xx and dropped / short transfers are transient, a source over the
size bound is permanent.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from tmor.errors import ErrorClass, SampleError
from tmor.pipeline.fetch_errors import classify_text

_REDIRECTS = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class Probe:
    """What one 1-byte ranged request told about a source."""

    url: str  # after redirects
    ranges: bool  # the server answered 206 to a Range request
    size: int | None  # total bytes, when the server said


class HostLimiter:
    """At most ``per_host`` open upstream connections per (scheme, host, port), and a pool of
    idle kept-alive connections per host for reuse."""

    def __init__(self, per_host: int):
        self.per_host = max(1, per_host)
        self._lock = threading.Lock()
        self._sems: dict[tuple[str, str], threading.BoundedSemaphore] = {}
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}

    def _sem(self, key: tuple[str, str]) -> threading.BoundedSemaphore:
        with self._lock:
            if key not in self._sems:
                self._sems[key] = threading.BoundedSemaphore(self.per_host)
            return self._sems[key]

    @contextmanager
    def connection(self, url: str, timeout_s: float) -> Iterator[_Conn]:
        """A connection to ``url``'s host, counted against the cap while held."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        sem = self._sem(key)
        if not sem.acquire(timeout=max(timeout_s, 1.0) * 4):
            raise SampleError(ErrorClass.TRANSIENT,
                              f"timeout: waited for a connection slot to {parts.netloc}")
        holder = _Conn(self, key, timeout_s)
        try:
            yield holder
        finally:
            holder.release()
            sem.release()

    def take_idle(self, key: tuple[str, str]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give_idle(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


class _Conn:
    """One held connection slot; reuses an idle kept-alive connection when it can."""

    def __init__(self, limiter: HostLimiter, key: tuple[str, str], timeout_s: float):
        self.limiter, self.key, self.timeout_s = limiter, key, timeout_s
        self.conn: http.client.HTTPConnection | None = None
        self.reusable = False

    def request(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """GET ``url`` (same host as the slot); one retry on a stale kept-alive connection."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            fresh = False
            if self.conn is None:
                self.conn = self.limiter.take_idle(self.key)
            if self.conn is None:
                cls = (http.client.HTTPSConnection if parts.scheme == "https"
                       else http.client.HTTPConnection)
                self.conn = cls(parts.netloc, timeout=self.timeout_s)
                fresh = True
            try:
                self.conn.request("GET", target, headers=headers)
                return self.conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")

    def release(self) -> None:
        if self.conn is not None:
            if self.reusable:
                self.limiter.give_idle(self.key, self.conn)
            else:
                self.conn.close()
            self.conn = None


def _http_error(status: int, reason: str, url: str) -> SampleError:
    msg = f"HTTP Error {status}: {reason} ({url[:200]})"
    if status == 429:
        return SampleError(ErrorClass.RATE_LIMITED, msg)
    if status >= 500:
        return SampleError(ErrorClass.TRANSIENT, msg)
    return SampleError(classify_text(msg, default=ErrorClass.PERMANENT), msg)


@contextmanager
def _get(limiter: HostLimiter, url: str, headers: dict[str, str], timeout_s: float,
         first: int | None = None, last: int | None = None,
         ) -> Iterator[tuple[str, http.client.HTTPResponse, _Conn]]:
    """GET with an optional byte range, following redirects: (final url, response, slot) while
    the caller reads the body under the connection slot."""
    hdrs = dict(headers)
    if first is not None:
        hdrs["Range"] = f"bytes={first}-{'' if last is None else last}"
    for _ in range(6):
        with limiter.connection(url, timeout_s) as slot:
            resp = slot.request(url, hdrs)
            if resp.status in _REDIRECTS and resp.getheader("Location"):
                resp.read()
                slot.reusable = not resp.will_close
                url = urljoin(url, resp.getheader("Location", ""))
                continue
            if resp.status >= 400:
                resp.read(64 * 1024)
                raise _http_error(resp.status, resp.reason, url)
            yield url, resp, slot
            return
    raise SampleError(ErrorClass.PERMANENT, f"too many redirects: {url[:200]}")


def _wrap_io(fn):  # type: ignore[no-untyped-def]
    """Run ``fn``; socket-level failures become transient SampleErrors."""
    try:
        return fn()
    except SampleError:
        raise
    except TimeoutError as exc:
        raise SampleError(ErrorClass.TRANSIENT, f"timeout: {exc}") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise SampleError(ErrorClass.TRANSIENT,
                          f"connection failed: {type(exc).__name__}: {exc}") from exc


def probe(limiter: HostLimiter, url: str, headers: dict[str, str], timeout_s: float) -> Probe:
    """One request for byte 0: 206 means Range works (size from Content-Range); 200 means the
    server ignores Range (size from Content-Length); the body is not read past that byte."""

    def run() -> Probe:
        with _get(limiter, url, headers, timeout_s, 0, 0) as (final, resp, slot):
            if resp.status == 206:
                m = _CONTENT_RANGE.match(resp.getheader("Content-Range", ""))
                resp.read()
                slot.reusable = not resp.will_close
                size = int(m.group(3)) if m and m.group(3) != "*" else None
                return Probe(final, True, size)
            length = resp.getheader("Content-Length")
            return Probe(final, False, int(length) if length and length.isdigit() else None)

    return _wrap_io(run)


def read_range(limiter: HostLimiter, url: str, headers: dict[str, str], first: int, last: int,
               timeout_s: float) -> bytes:
    """Bytes ``first..last`` (inclusive) of ``url``, exactly; a short read is transient."""

    def run() -> bytes:
        with _get(limiter, url, headers, timeout_s, first, last) as (_, resp, slot):
            want = last - first + 1
            if resp.status != 206:
                raise SampleError(ErrorClass.TRANSIENT,
                                  f"server answered {resp.status} to a Range request it had "
                                  f"honoured before ({url[:200]})")
            data = resp.read(want)
            if len(data) != want:
                raise SampleError(ErrorClass.TRANSIENT,
                                  f"truncated transfer: got {len(data)} of {want} bytes "
                                  f"at {first} ({url[:200]})")
            slot.reusable = not resp.will_close
            return data

    return _wrap_io(run)


def download(limiter: HostLimiter, url: str, headers: dict[str, str], path: str,
             max_bytes: int, timeout_s: float) -> int:
    """The whole of ``url`` into ``path``; at most ``max_bytes`` (permanent error past it), and a
    transfer that ends before its Content-Length is transient. Returns the bytes written."""

    def too_big(n: int | str) -> SampleError:
        return SampleError(ErrorClass.PERMANENT,
                           f"source too large for a whole download: {n} bytes > --max-source-mb "
                           f"{max_bytes / 1e6:g} MB (the server ignores Range)")

    def run() -> int:
        with _get(limiter, url, headers, timeout_s) as (_, resp, _slot):
            length = resp.getheader("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            if expected is not None and expected > max_bytes:
                raise too_big(expected)
            got = 0
            with open(path, "wb") as f:
                while True:
                    chunk = resp.read1(1 << 16)
                    if not chunk:
                        break
                    got += len(chunk)
                    if got > max_bytes:
                        raise too_big(f"more than {got}")
                    f.write(chunk)
            if expected is not None and got != expected:
                raise SampleError(ErrorClass.TRANSIENT,
                                  f"truncated transfer: got {got} of {expected} bytes "
                                  f"({url[:200]})")
            return got

    return _wrap_io(run)
