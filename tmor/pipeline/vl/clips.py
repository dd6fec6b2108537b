"""Clip decoding for the video-language stages: the ViCLIP frame choice, decoded in threads."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from tmor.errors import ErrorClass, SampleError
from tmor.pipeline.stage import Sample
from tmor.pipeline.vl import frame_indices

T = TypeVar("T")
R = TypeVar("R")


def clip_source(sample: Sample) -> bytes:
    """The mp4 bytes of a sample's fetch output (bad_input when absent)."""
    data = sample.members.get("fetch", {}).get("mp4")
    if not data:
        raise SampleError(ErrorClass.BAD_INPUT, "no fetched mp4 for this key")
    return data


def decode_clip(src: Any, num_frames: int, image_size: int, stats: Any = None,
                seek: bool = True) -> tuple[np.ndarray, list[int]]:
    """(num_frames, S, S, 3) uint8 RGB at the ViCLIP indices, and those indices.

    ``seek``: seek to each frame where the clip's keyframes make that cheaper (fetch places them
    at these indices), else decode from the start (:func:`~tmor.pipeline.video.read_frames_seek`;
    the same frames either way); False: always decode from the start. ``stats``: a
    :class:`~tmor.pipeline.video.ReadStats` that receives the frames decoded.
    Too short (fewer frames than ``num_frames``) or undecodable input -> SampleError bad_input.
    """
    from tmor.pipeline.video import (
        ReadStats,
        VideoDecodeError,
        probe,
        read_frames_seek,
        read_frames_sequential,
    )

    stats = stats if stats is not None else ReadStats()
    try:
        info = probe(src)
        idx = frame_indices(info.frames, num_frames)
        size = (image_size, image_size)
        if seek:
            frames = read_frames_seek(src, idx, size=size, stats=stats)
        else:
            frames = read_frames_sequential(src, idx, size, stats)
    except VideoDecodeError as e:
        raise SampleError(ErrorClass.BAD_INPUT, f"undecodable clip: {e}") from e
    except ValueError as e:  # too short
        raise SampleError(ErrorClass.BAD_INPUT, f"clip too short: {e}") from e
    return frames, idx


def prefetch(items: Iterable[T], fn: Callable[[T], R], threads: int = 2,
             window: int = 16) -> Iterator[tuple[T, R | BaseException]]:
    """Map ``fn`` over ``items`` in a thread pool, in order, at most ``window`` in flight.

    Yields ``(item, result)`` or ``(item, exception)``; the input iterator is consumed lazily.
    """
    pending: deque = deque()
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="tmor-vl") as pool:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= max(1, window):
                yield _pop(pending)
        while pending:
            yield _pop(pending)


def _pop(pending: deque) -> tuple[Any, Any]:
    item, fut = pending.popleft()
    try:
        return item, fut.result()
    except Exception as e:  # handed to the caller, which classifies it
        return item, e
