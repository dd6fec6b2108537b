"""Stable sample keys: derived from (source, start, end), never from row order."""

from __future__ import annotations

import hashlib
import math


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
