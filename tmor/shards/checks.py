"""Values checked at the door: every importer and ``--data x.pkl`` pass what they read through
these checks before anything is written or trained on.

A skeleton is refused (:class:`DataError`, naming the file and the sample) when its keypoint is
not a numeric (M, T, V, 2|3) array with at least one person, frame and joint, when its
keypoint_score is not (M, T, V) or its keypoint_3d not (M, T, V, 3), or when any of them holds
NaN or Inf (a non-finite value is never stored: fix or drop the sample). Class ids must lie in the
class list, frame counts a file declares must match its arrays, sample names must be unique, and
sizes a file declares are checked before anything is allocated for them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from tmor import fsio

#: the largest input file an importer reads (the reader's bound on a shard member, 1 GiB)
MAX_INPUT_BYTES = 1 << 30


class DataError(ValueError):
    """Bad input data; the message names the file (and the sample) and what is wrong."""


def read_input(url: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of an input file, refusing one over ``max_bytes`` before reading it."""
    fs, path = fsio.filesystem(url)
    size = fs.size(path)
    if size is not None and size > max_bytes:
        raise DataError(f"{url}: {size} bytes, over the {max_bytes}-byte limit of an input file")
    with fs.open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"{url}: over the {max_bytes}-byte limit of an input file")
    return data


def describe(error: BaseException) -> str:
    """One line for an error raised while reading a file."""
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}" if error.args else "missing field"
    text = " ".join(str(error).split())
    if isinstance(error, ValueError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def in_file(url: str, error: BaseException, sample: str | None = None) -> DataError:
    """``error`` as a :class:`DataError` naming ``url`` (and ``sample``) unless it does."""
    text = describe(error)
    where = url if sample is None else f"{url}: {sample}"
    return DataError(text if text.startswith(str(url)) else f"{where}: {text}")


@contextmanager
def naming(url: str, sample: str | None = None) -> Iterator[None]:
    """Any error raised inside becomes one :class:`DataError` line naming ``url`` (and
    ``sample``): a malformed input is reported, never a traceback."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - whatever a malformed file makes a parser raise
        raise in_file(url, e, sample) from e  # --debug shows the parser's own traceback


F = TypeVar("F", bound=Callable[..., Any])


def names_file(fn: F) -> F:
    """Decorate a reader whose first argument is the file's URL: errors name that file."""

    @functools.wraps(fn)
    def wrapper(url: str, *args: Any, **kwargs: Any) -> Any:
        with naming(url):
            return fn(url, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def numeric(value: Any, what: str) -> np.ndarray:
    """``value`` as a float32 array; :class:`DataError` for anything that is not numbers."""
    try:
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise TypeError(a.dtype)
        return a.astype(np.float32, copy=False)
    except (TypeError, ValueError):
        kind = getattr(getattr(value, "dtype", None), "name", type(value).__name__)
        raise DataError(f"{what} is not a numeric array ({kind})") from None


def check_skeleton(name: str, keypoint: np.ndarray, score: np.ndarray,
                   keypoint_3d: np.ndarray | None = None) -> None:
    """Refuse a skeleton whose arrays break docs/contracts.md (see the module docstring);
    messages start with ``name`` (the sample) when given."""
    kp, sc, at = keypoint, score, f"{name}: " if name else ""
    if kp.ndim != 4 or kp.shape[-1] not in (2, 3):
        raise DataError(f"{at}keypoint has shape {kp.shape}, expected (M, T, V, 2|3)")
    m, t, v = kp.shape[:3]
    if min(m, t, v) < 1:
        missing = "frame" if t < 1 else "person" if m < 1 else "joint"
        raise DataError(f"{at}keypoint has shape {kp.shape}: no {missing}")
    if sc.shape != kp.shape[:3]:
        raise DataError(f"{at}keypoint_score has shape {sc.shape}, keypoint (M, T, V) is "
                        f"{kp.shape[:3]}")
    if keypoint_3d is not None and keypoint_3d.shape != (m, t, v, 3):
        raise DataError(f"{at}keypoint_3d has shape {keypoint_3d.shape}, expected {(m, t, v, 3)}")
    for what, a in (("keypoint", kp), ("keypoint_score", sc), ("keypoint_3d", keypoint_3d)):
        if a is not None and not np.isfinite(a).all():
            bad = int(a.size - np.isfinite(a).sum())
            raise DataError(f"{at}{what} holds {bad} NaN or Inf value(s); non-finite values are "
                            "refused")


def check_class_id(value: Any, num_classes: int, what: str) -> int:
    """``value`` as a class id in [0, num_classes); :class:`DataError` naming ``what``."""
    try:
        c = int(value)
        if c != value:
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"{what}: class id {value!r} is not an integer") from None
    if not 0 <= c < num_classes:
        raise DataError(f"{what}: class id {c} outside 0..{num_classes - 1}")
    return c


def check_frame_count(name: str, field: str, declared: Any, frames: int) -> None:
    """A frame count a file declares must equal the frames of its arrays."""
    if np.ndim(declared) != 0 or int(declared) != frames:
        at = f"{name}: " if name else ""
        raise DataError(f"{at}{field} is {declared}, the arrays have {frames} frames")


def check_declared_count(url: str, what: str, value: int, available: int) -> int:
    """A count read from a file (frames, bodies), checked before anything is allocated for it:
    at least 1 and at most ``available`` (what the rest of the file can hold)."""
    if value < 1:
        raise DataError(f"{url}: {what} {value}, expected at least 1")
    if value > available:
        raise DataError(f"{url}: {what} {value}, but the rest of the file holds at most "
                        f"{available}")
    return value


def check_allocation(url: str, what: str, nbytes: int) -> None:
    """Sizes taken from a file may ask for at most the reader's bound on a sample
    (:data:`tmor.skeleton.npz.MAX_POSE_BYTES`): it could never read a larger one back."""
    from tmor.skeleton.npz import MAX_POSE_BYTES

    if nbytes > MAX_POSE_BYTES:
        raise DataError(f"{url}: {what} need {nbytes} bytes, over the {MAX_POSE_BYTES}-byte "
                        "bound on a sample")


class UniqueNames:
    """Names seen so far (``what``: "sample name", "key"); a repeat is a :class:`DataError`
    naming both origins."""

    def __init__(self, what: str = "sample name") -> None:
        self.what = what
        self.seen: dict[str, str] = {}

    def add(self, name: str, origin: str) -> None:
        if name in self.seen:
            raise DataError(f"duplicate {self.what} {name!r}: from {self.seen[name]} and "
                            f"{origin}; {self.what}s must be unique")
        self.seen[name] = origin
