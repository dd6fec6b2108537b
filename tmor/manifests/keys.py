"""Stable sample keys: derived from (source, start, end), never from row order."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable


def _fmt_time(t: float | None) -> str:
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return ""
    return f"{float(t):.3f}"


def sample_key(source: str, start: float | None, end: float | None) -> str:
    """16 hex characters of sha1(source, start, end); times rounded to the millisecond.

    A webdataset key holds no '.', so hex is safe in tar member names.
    """
    payload = "\x1f".join([source, _fmt_time(start), _fmt_time(end)]).encode()
    return hashlib.sha1(payload).hexdigest()[:16]


def sample_keys(
    sources: Iterable[str], starts: Iterable[float | None], ends: Iterable[float | None]
) -> list[str]:
    """:func:`sample_key` of many rows at once (the same keys, without per-call overhead)."""
    sha1 = hashlib.sha1
    return [
        sha1(f"{s}\x1f{a}\x1f{b}".encode()).hexdigest()[:16]
        for s, a, b in zip(sources, _fmt_times(starts), _fmt_times(ends), strict=True)
    ]


def _fmt_times(times: Iterable[float | None]) -> list[str]:
    """:func:`_fmt_time` of each value, formatting each distinct value once."""
    values = list(times)
    memo: dict[float | None, str] = {}
    out = []
    for t in values:
        s = memo.get(t)
        if s is None:
            s = memo[t] = _fmt_time(t)
        out.append(s)
    return out
