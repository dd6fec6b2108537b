"""Decode workers for the pose stage: clips decoded in parallel into one bounded frame queue.

Each of ``workers`` threads takes the next clip (at most ``clips_in_flight`` being decoded or
queued at once: the consumer gives a clip's slot back by :meth:`FrameFeed.release` when it takes
the clip's end marker), decodes it
in that thread (PyAV; the codec's own threads as ``codec_threads``) and puts its frames, then an
end marker, into one queue shared by all clips. The consumer takes frames from whichever clip has
them ready; frames of one clip stay in order, and its end marker comes after its last frame.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: what the queue carries: a frame, a clip's end (error None: decoded to the end), a failure of
#: the sample iterator itself, or a worker leaving
FRAME, END, FAIL, EXIT = "frame", "end", "fail", "exit"


@dataclass
class Opened:
    """A clip as its decode worker opened it: frames to come at ``size`` (None: native)."""

    step: float
    size: tuple[int, int] | None
    frames: Iterator[tuple[int, np.ndarray]] | None = None


class FrameFeed:
    """``open_clip(sample) -> (clip, Opened)`` runs in the workers (probe, sizes); ``decode(clip,
    opened)`` yields its frames there. Items: ``(FRAME, clip, index, rgb)``, ``(END, clip,
    error)``, ``(FAIL, None, exc)``, ``(EXIT, None, None)``."""

    def __init__(self, samples: Iterator[Any], open_clip: Callable[[Any], tuple[Any, Any]],
                 decode: Callable[[Any, Any], Iterator[tuple[int, np.ndarray]]], workers: int,
                 clips_in_flight: int, queue_frames: int):
        self._samples = samples
        self._open, self._decode = open_clip, decode
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, clips_in_flight))
        self._stop = threading.Event()
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, queue_frames))
        self._threads = [threading.Thread(target=self._work, name=f"tmor-decode-{i}", daemon=True)
                         for i in range(max(1, workers))]
        self.running = len(self._threads)
        for t in self._threads:
            t.start()

    def _put(self, item: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _next_sample(self) -> tuple[bool, Any]:
        with self._lock:
            try:
                return True, next(self._samples)
            except StopIteration:
                return False, None

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                while not self._slots.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                try:
                    more, sample = self._next_sample()
                except BaseException as e:  # noqa: BLE001 - the runner's iterator failed
                    self._put((FAIL, None, e))
                    return
                if not more:
                    self._slots.release()
                    return
                self._clip(sample)
        finally:
            self._put((EXIT, None, None))

    def _clip(self, sample: Any) -> None:
        clip = None
        try:
            clip, opened = self._open(sample)
            for idx, frame in self._decode(clip, opened):
                if not self._put((FRAME, clip, idx, frame)):
                    return
            self._put((END, clip, None))
        except BaseException as e:  # noqa: BLE001 - the clip's failure, classified by the stage
            self._put((END, clip if clip is not None else sample, e))

    def release(self) -> None:
        """A clip's end marker was taken: another clip may be opened."""
        self._slots.release()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
