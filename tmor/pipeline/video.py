"""Video decoding with PyAV: probe, streamed frames with fps sampling, and random-index reads.

``src`` is a path (str / Path) or the mp4 bytes of a fetch tar. Every failure to read a video
(corrupt, truncated, zero frames, not a video at all) raises :class:`VideoDecodeError`, which the
stages record as ``bad_input``. ``size`` is always ``(width, height)``; frames come back as RGB
uint8 arrays of shape (height, width, 3). PyAV is imported inside the functions.
"""

from __future__ import annotations

import io
import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Source = str | os.PathLike | bytes | bytearray | memoryview

_END = object()

#: a clip that decodes to fewer than this fraction of the frames its header announces is truncated
TRUNCATED_FRACTION = 0.9


class VideoDecodeError(ValueError):
    """The input cannot be decoded as a video (corrupt, truncated, zero frames, not a video)."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads from the container header (frames may be an estimate)."""

    fps: float
    frames: int
    width: int
    height: int
    duration: float


def _open(src: Source) -> Any:
    import av

    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise VideoDecodeError("empty input (0 bytes)")
        handle: Any = io.BytesIO(bytes(src))
        name = f"<{len(src)} bytes>"
    else:
        handle = os.fspath(src)
        name = handle
    try:
        container = av.open(handle, mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(f"{name}: not a readable video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{name}: no video stream")
    return container


def _stream_fps(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            f = float(rate)
            if 0 < f < 1000:
                return f
    return 0.0


def probe(src: Source) -> VideoInfo:
    """fps, frame count, size and duration of the first video stream, from the headers.

    ``frames`` is the container's count, or ``round(duration * fps)`` where the container has none.
    """
    container = _open(src)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        frames = int(stream.frames or 0)
        if frames <= 0 and fps > 0:
            frames = int(round(duration * fps))
        if duration <= 0 and fps > 0 and frames > 0:
            duration = frames / fps
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    finally:
        container.close()
    if frames <= 0 or width <= 0 or height <= 0:
        raise VideoDecodeError(f"zero-frame or zero-size video (frames={frames}, {width}x{height})")
    return VideoInfo(fps=fps, frames=frames, width=width, height=height, duration=duration)


def sample_step(src_fps: float, fps: float | None) -> float:
    """Source frames per kept frame: 1.0 keeps all; never upsamples."""
    if not fps or not src_fps or fps >= src_fps:
        return 1.0
    return src_fps / fps


def _to_rgb(frame: Any, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    w, h = size
    return frame.to_ndarray(format="rgb24", width=int(w), height=int(h))


def _decode(container: Any) -> Iterator[Any]:
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        yield from container.decode(stream)
    except (av.FFmpegError, EOFError) as e:
        raise VideoDecodeError(f"decoding failed ({e})") from e


def decode_frames(
    src: Source,
    step: float = 1.0,
    size: tuple[int, int] | None = None,
    threads: int = 0,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb)`` decoded in the calling thread, one kept frame every ``step``
    source frames (see :func:`sample_step`); ``size`` as in :func:`iter_frames`; ``threads``: the
    codec's own threads (0: FFmpeg decides). Raises :class:`VideoDecodeError` on unreadable input,
    also after the last frame when the clip turns out truncated."""
    container = _open(src)
    try:
        stream = container.streams.video[0]
        if threads:
            stream.thread_count = int(threads)
        n = total = 0
        next_keep = 0.0
        expected = int(stream.frames or 0)
        try:
            for i, frame in enumerate(_decode(container)):
                total = i + 1
                if i + 1e-6 < next_keep:
                    continue
                next_keep += step
                while next_keep <= i + 1e-6:  # never fall behind (step >= 1)
                    next_keep += step
                yield i, _to_rgb(frame, size)
                n += 1
        except VideoDecodeError:
            raise
        except Exception as e:  # noqa: BLE001 - any decoder failure is the clip's
            raise VideoDecodeError(f"decoding failed ({type(e).__name__}: {e})") from e
        if n == 0:
            raise VideoDecodeError("zero frames decoded")
        if expected > 0 and total < TRUNCATED_FRACTION * expected:
            raise VideoDecodeError(f"truncated: decoded {total} of the {expected} frames announced")
    finally:
        container.close()


def _producer(
    src: Source,
    step: float,
    size: tuple[int, int] | None,
    out: queue.Queue,
    stop: threading.Event,
) -> None:
    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in decode_frames(src, step, size):
            if stop.is_set() or not put(item):
                return
        put(_END)
    except BaseException as e:  # noqa: BLE001 - handed to the consumer
        if not isinstance(e, VideoDecodeError):
            e = VideoDecodeError(f"decoding failed ({type(e).__name__}: {e})")
        put(e)


def iter_frames(
    src: Source,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    queue_size: int = 64,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, rgb)`` decoded in a background thread through a bounded queue.

    fps:   target rate; frames are kept at a stride of ``src_fps / fps`` (never upsampled;
           None keeps every frame). ``frame_index`` counts decoded frames of the clip from 0.
    size:  ``(width, height)`` to resize to once, in the decoder's scaler; None keeps the size.
    Memory is bounded by ``queue_size`` frames, whatever the clip's length. Stopping the
    iteration early stops the thread. Raises :class:`VideoDecodeError` on unreadable input,
    also after the last frame when the clip turns out truncated (fewer frames than announced).
    """
    src_fps = 0.0
    if fps:
        src_fps = probe(src).fps
    step = sample_step(src_fps, fps)
    out: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
    stop = threading.Event()
    thread = threading.Thread(
        target=_producer, args=(src, step, size, out, stop), name="tmor-decode", daemon=True
    )
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


def sample_indices(n_frames: int, src_fps: float, fps: float | None) -> list[int]:
    """The frame indices :func:`iter_frames` keeps for a clip of ``n_frames`` at ``src_fps``."""
    step = sample_step(src_fps, fps)
    out, t = [], 0.0
    while t < n_frames - 1e-6:
        out.append(int(math.ceil(t - 1e-6)))
        t += step
    return sorted(set(out))


def read_frames(
    src: Source,
    indices: Sequence[int],
    size: tuple[int, int] | None = None,
    clamp: bool = True,
    stats: ReadStats | None = None,
) -> np.ndarray:
    """Decode once and return the frames at ``indices`` (any order, repeats allowed).

    Returns (len(indices), H, W, 3) uint8. Indices past the last decoded frame take the last frame
    when ``clamp`` (header frame counts can be off by a few); otherwise they raise
    :class:`VideoDecodeError`. Negative indices are an error. ``stats`` counts decoded frames.
    """
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("read_frames needs at least one index")
    if min(idx) < 0:
        raise ValueError(f"negative frame index in {idx}")
    wanted = set(idx)
    last_needed = max(idx)
    got: dict[int, np.ndarray] = {}
    last: tuple[int, np.ndarray] | None = None
    container = _open(src)
    try:
        for i, frame in enumerate(_decode(container)):
            if stats is not None:
                stats.decoded += 1
            if i in wanted:
                got[i] = _to_rgb(frame, size)
                last = (i, got[i])
            elif i > last_needed:
                break
            else:
                last = (i, frame)
            if i >= last_needed:
                break
    finally:
        container.close()
    if last is None:
        raise VideoDecodeError("zero frames decoded")
    missing = [i for i in idx if i not in got]
    if missing:
        if not clamp:
            raise VideoDecodeError(f"frame indices {missing} past the end (last {last[0]})")
        li, lf = last
        tail = lf if isinstance(lf, np.ndarray) else _to_rgb(lf, size)
        for i in missing:
            got[i] = tail
    return np.stack([got[i] for i in idx])


@dataclass
class ReadStats:
    """How a :func:`read_frames_seek` call got its frames."""

    decoded: int = 0  # frames the decoder produced
    seeks: int = 0  # seeks to a keyframe
    path: str = ""  # "seek" or "sequential"


def _frame_table(container: Any) -> tuple[list[int], set[int]] | None:
    """Presentation timestamps of every frame (sorted) and those of keyframes, from the packets
    alone (no decoding); None when some packet has no pts (then only sequential reads are safe)."""
    stream = container.streams.video[0]
    pts: list[int] = []
    keys: set[int] = set()
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's end-of-stream flush packet
            continue
        if packet.pts is None:
            return None
        if getattr(packet, "is_discard", False):
            continue
        pts.append(int(packet.pts))
        if packet.is_keyframe:
            keys.add(int(packet.pts))
    pts.sort()
    return (pts, keys) if pts else None


def _seek_plan(pts: list[int], keys: set[int], wanted: list[int]) -> tuple[list[tuple[int, int]],
                                                                           int]:
    """For sorted distinct frame positions ``wanted``: the runs to decode, as (start position of
    a keyframe, last position), and the frames they decode."""
    key_pos = [i for i, p in enumerate(pts) if p in keys]
    runs: list[tuple[int, int]] = []
    cost = 0
    for w in wanted:
        k = max((i for i in key_pos if i <= w), default=0)
        if runs and runs[-1][1] < w and k <= runs[-1][1] + 1:
            cost += w - runs[-1][1]
            runs[-1] = (runs[-1][0], w)
        else:
            cost += w - k + 1
            runs.append((k, w))
    return runs, cost


def read_frames_seek(
    src: Source,
    indices: Sequence[int],
    size: tuple[int, int] | None = None,
    stats: ReadStats | None = None,
) -> np.ndarray:
    """:func:`read_frames` (clamped) that seeks to the keyframe before each wanted frame instead of
    decoding the clip from its start, when that decodes fewer frames (clips whose keyframes sit at
    or just before the wanted frames: fetch places them there); otherwise it decodes sequentially.
    Same frames as :func:`read_frames`. ``stats`` (optional) receives the frames decoded."""
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("read_frames_seek needs at least one index")
    if min(idx) < 0:
        raise ValueError(f"negative frame index in {idx}")
    stats = stats if stats is not None else ReadStats()
    container = _open(src)
    try:
        table = _frame_table(container)
        if table is not None:
            pts, keys = table
            wanted = sorted({min(i, len(pts) - 1) for i in idx})
            runs, cost = _seek_plan(pts, keys, wanted)
            if cost < max(wanted) + 1:
                got = _read_runs(container, pts, runs, set(wanted), size, stats)
                if got is not None:
                    stats.path = "seek"
                    return np.stack([got[min(i, len(pts) - 1)] for i in idx])
    finally:
        container.close()
    return read_frames_sequential(src, idx, size, stats)


def _read_runs(container: Any, pts: list[int], runs: list[tuple[int, int]], wanted: set[int],
               size: tuple[int, int] | None, stats: ReadStats) -> dict[int, np.ndarray] | None:
    """Decode each run from its keyframe; None when the decoder's frames do not line up with the
    packet table (then the caller decodes sequentially)."""
    stream = container.streams.video[0]
    stream.thread_type = "NONE"  # one frame per seek: decoder threads only add hand-offs
    stream.thread_count = 1
    pos_of = {p: i for i, p in enumerate(pts)}
    got: dict[int, np.ndarray] = {}
    for start, last in runs:
        container.seek(pts[start], stream=stream, backward=True, any_frame=False)
        stats.seeks += 1
        reached = False
        try:
            for frame in container.decode(stream):
                stats.decoded += 1
                pos = pos_of.get(frame.pts) if frame.pts is not None else None
                if pos is None:
                    return None
                if pos in wanted and pos >= start:
                    got[pos] = _to_rgb(frame, size)
                if pos >= last:
                    reached = True
                    break
        except Exception as e:  # noqa: BLE001 - any decoder failure is the clip's
            raise VideoDecodeError(f"decoding failed ({type(e).__name__}: {e})") from e
        if not reached:
            return None
    return got if wanted <= set(got) else None


def read_frames_sequential(src: Source, idx: Sequence[int], size: tuple[int, int] | None = None,
                           stats: ReadStats | None = None) -> np.ndarray:
    """:func:`read_frames` (clamped) that counts the frames it decodes in ``stats``."""
    stats = stats if stats is not None else ReadStats()
    stats.path = "sequential"
    return read_frames(src, idx, size, clamp=True, stats=stats)
