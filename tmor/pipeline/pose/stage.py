"""The ``pose`` stage: tracked 2D (and 3D) skeletons of the people in every fetched clip.

Four things run at once, joined by bounded queues:
decode workers (:mod:`~tmor.pipeline.pose.feed`: ``decode_workers`` threads, clips decoded in
parallel, frames of whichever clip has them ready) -> this thread (frames batched by canvas, each
batch prepared on the host: the pinned canvas for the ultralytics tensor engine) -> a device
thread (one model call per ``batch_size`` frames) -> a tracker thread (per-clip
:class:`~tmor.pipeline.pose.tracking.Tracker`, top-M selection, layout conversion, npz
encoding) -> results.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tmor.config import known_layout, rules, torch_device
from tmor.errors import ErrorClass, PluginUnavailable, SampleError
from tmor.pipeline.pose import BACKENDS, PoseBackend, get_backend
from tmor.pipeline.pose.feed import END, EXIT, FAIL, FRAME, FrameFeed, Opened
from tmor.pipeline.pose.tracking import Detections, Tracker, select_tracks
from tmor.pipeline.stage import Result, Sample, Stage
from tmor.skeleton import layouts as L
from tmor.skeleton.npz import npz_bytes

CANONICAL = "coco17"


@rules(backend=" | ".join(BACKENDS), device=torch_device, fps="> 0", max_fps="> 0",
       imgsz=">= 32", batch_size=">= 1", decode_workers=">= 1", codec_threads=">= 0",
       clips_in_flight=">= 1", queue_size=">= 1", max_persons=">= 1", lift="none | 3d",
       layout=known_layout, conf="[0, 1]", min_person_score="[0, 1]", max_age=">= 0")
@dataclass
class PoseConfig:
    """Options of ``tmor-data extract-pose`` (every field is also a CLI option)."""

    backend: str = "ultralytics"  # ultralytics | mediapipe | rtmlib | mmpose
    model: str | None = None  # a local model file or a backend model name; None: backend default
    device: str = "auto"  # auto | cpu | cuda[:N]
    fps: float | None = None  # target frame rate; None: the clip's own, capped at max_fps
    max_fps: float = 30.0
    imgsz: int = 640  # long side of the frames given to the model (ultralytics)
    batch_size: int | None = None  # frames per model call, across clips; None: 128 on CUDA, 32
    decode_workers: int = 4  # threads decoding clips in parallel
    codec_threads: int = 0  # each decoder's own threads (0: FFmpeg decides)
    clips_in_flight: int = 8  # clips open at once (decoding, or waiting for their results)
    queue_size: int | None = None  # decoded frames buffered, all clips; None: 2 x batch_size
    max_persons: int = 2  # tracks kept per clip (frames present x mean score x mean box area)
    lift: str = "none"  # none | 3d (3d: keypoint_3d in metres, from the mediapipe backend)
    layout: str = "coco17"  # joint layout written to pose.npz (see layouts.py)
    conf: float = 0.25  # detection score threshold
    # a detection is kept when box score x mean keypoint score reaches this (drops objects
    # detected as people with no confident joints, keeps close-ups and lying people)
    min_person_score: float = 0.05
    max_age: int = 5  # frames a track survives without a detection
    backend_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Clip:
    sample: Sample
    tracker: Tracker
    width: int = 0
    height: int = 0
    scale: tuple[float, float] = (1.0, 1.0)
    fps: float = 0.0
    canvas: Any = None
    t0: float = field(default_factory=time.perf_counter)
    dets: list[Detections] = field(default_factory=list)
    frame_index: list[int] = field(default_factory=list)


def _hand_over(q: queue.Queue, item: Any, failure: list[BaseException]) -> None:
    """Put ``item`` on a bounded queue, unless a thread of the stage failed (then raise that)."""
    while True:
        if failure:
            raise failure[0]
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _sample_error(e: BaseException) -> SampleError:
    from tmor.pipeline.video import VideoDecodeError

    if isinstance(e, SampleError):
        return e
    if isinstance(e, VideoDecodeError):
        return SampleError(ErrorClass.BAD_INPUT, str(e))
    return SampleError(ErrorClass.TRANSIENT, f"{type(e).__name__}: {e}")


class PoseStage(Stage):
    """fetch mp4 -> ``<key>.pose.npz`` (see docs/contracts.md)."""

    name = "pose"
    needs = {"fetch": ("mp4", "json")}

    def __init__(self, config: PoseConfig | None = None):
        self.config = config or PoseConfig()
        self.backend: PoseBackend | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.config
        if cfg.lift not in ("none", "3d"):
            raise PluginUnavailable(f"unknown --lift {cfg.lift!r}; choose none or 3d")
        L.num_joints(cfg.layout)  # raises on an unknown layout
        options = dict(cfg.backend_options)
        if cfg.backend == "ultralytics":
            options.setdefault("imgsz", cfg.imgsz)
            options.setdefault("conf", cfg.conf)
        backend = get_backend(cfg.backend, model=cfg.model, device=cfg.device, **options)
        if cfg.lift == "3d" and not backend.has_3d:
            raise PluginUnavailable(
                f"--lift 3d needs a backend with metric 3D output (mediapipe); "
                f"{cfg.backend!r} gives 2D only"
            )
        backend.load()
        self.backend = backend

    def teardown(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def card(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": asdict(self.config)}
        if self.backend is not None:
            out["backend"] = self.backend.card()
        return out

    # -- processing ----------------------------------------------------------------------------
    def _open(self, sample: Sample) -> tuple[_Clip, Opened]:
        """In a decode worker: probe the clip and choose its frame rate and decode size."""
        from tmor.pipeline import video

        assert self.backend is not None
        clip = _Clip(sample=sample, tracker=Tracker(max_age=self.config.max_age))
        data = sample.members.get("fetch", {}).get("mp4")
        if not data:
            raise SampleError(ErrorClass.BAD_INPUT, "no mp4 member in the fetch shard")
        info = video.probe(data)
        cfg = self.config
        target = cfg.fps or min(info.fps or cfg.max_fps, cfg.max_fps)
        step = video.sample_step(info.fps, target)
        size = None if self.backend.native_frames else self.backend.input_size(info.width,
                                                                               info.height)
        w, h = size or (info.width, info.height)
        clip.width, clip.height = info.width, info.height
        clip.scale = (info.width / w, info.height / h)
        clip.fps = (info.fps / step) if info.fps else float(target)
        clip.canvas = self.backend.canvas_of(info.width, info.height)  # batches never mix canvases
        return clip, Opened(step=step, size=size)

    def _frames(self, clip: _Clip, opened: Opened) -> Iterator[tuple[int, np.ndarray]]:
        from tmor.pipeline import video

        return video.decode_frames(clip.sample.members["fetch"]["mp4"], opened.step,
                                   opened.size, threads=self.config.codec_threads)

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        if self.backend is None:
            self.setup()
        backend = self.backend
        assert backend is not None
        cfg = self.config
        batch = cfg.batch_size or (128 if str(backend.device).startswith("cuda") else 32)
        feed = FrameFeed(iter(samples), self._open, self._frames, cfg.decode_workers,
                         cfg.clips_in_flight, cfg.queue_size or 2 * batch)
        results: queue.Queue = queue.Queue()
        work: queue.Queue = queue.Queue(maxsize=2)
        failure: list[BaseException] = []
        to_device: queue.Queue = queue.Queue(maxsize=1)  # see DevicePose.prepare: 3 buffers
        tracker = threading.Thread(target=self._track, args=(work, results, failure),
                                   name="tmor-track", daemon=True)
        device = threading.Thread(target=self._device, args=(to_device, work, failure),
                                  name="tmor-device", daemon=True)
        tracker.start()
        device.start()
        pending: dict[Any, list[tuple]] = {}  # canvas -> frames and end markers, in order
        counts: dict[Any, int] = {}

        def run(key: Any) -> None:
            items = pending.pop(key, [])
            counts.pop(key, None)
            if not items:
                return
            frames = [it[3] for it in items if it[0] == FRAME]
            streams = [it[1].sample.key for it in items if it[0] == FRAME]
            scales = [it[1].scale for it in items if it[0] == FRAME]
            n = len(frames)
            if 0 < n < batch and not backend.stateful:  # every call the same size: a frame's
                pad = batch - n  # result never depends on how the frames fell into batches
                frames, streams, scales = (frames + [frames[-1]] * pad, streams + [None] * pad,
                                           scales + [scales[-1]] * pad)
            prepared = backend.prepare(frames) if n else None  # while the device runs the last
            _hand_over(to_device, (items, prepared, scales, streams, n), failure)

        def ready() -> Iterator[Result]:
            while True:
                try:
                    yield results.get_nowait()
                except queue.Empty:
                    return

        try:
            while feed.running:
                item = feed.queue.get()  # frames of whichever clip has them ready
                kind, clip = item[0], item[1]
                if kind == EXIT:
                    feed.running -= 1
                    continue
                if kind == FAIL:
                    raise item[2]
                if kind == END:  # decoded: its decode slot goes to the next clip
                    feed.release()
                    if not isinstance(clip, _Clip):  # could not even open it
                        results.put(Result(key=clip.key, error=_sample_error(item[2])))
                        continue
                pending.setdefault(clip.canvas, []).append(item)
                if kind == FRAME:
                    counts[clip.canvas] = counts.get(clip.canvas, 0) + 1
                    if counts[clip.canvas] >= batch:
                        run(clip.canvas)
                yield from ready()
            for key in list(pending):
                run(key)
            _hand_over(to_device, None, failure)
            device.join()
            tracker.join()
            if failure:
                raise failure[0]
            yield from ready()
        finally:
            feed.close()
            if device.is_alive() or tracker.is_alive():
                failure.append(RuntimeError("stopped"))
                for q in (to_device, work):
                    try:
                        q.put_nowait(None)
                    except queue.Full:
                        pass

    def _device(self, to_device: queue.Queue, work: queue.Queue,
                failure: list[BaseException]) -> None:
        """The device thread: prepared batches through the model, detections to the tracker."""
        backend = self.backend
        assert backend is not None
        try:
            while True:
                got = to_device.get()
                if got is None or failure:
                    _hand_over(work, None, failure)
                    return
                items, prepared, scales, streams, n = got
                dets = backend.infer_prepared(prepared, scales, streams)[:n] if n else []
                for it in items:
                    if it[0] == END and isinstance(it[1], _Clip):
                        backend.close_stream(it[1].sample.key)
                _hand_over(work, (items, dets), failure)
        except BaseException as e:  # noqa: BLE001 - handed to the stage's thread
            failure.append(e)

    def _track(self, work: queue.Queue, results: queue.Queue,
               failure: list[BaseException]) -> None:
        """The tracker thread: detections into each clip's tracker, finished clips to npz."""
        try:
            while True:
                got = work.get()
                if got is None or failure:
                    return
                items, dets = got
                it_dets = iter(dets)
                for item in items:
                    clip = item[1]
                    if item[0] == FRAME:
                        self._add(clip, item[2], next(it_dets))
                        continue
                    if item[2] is not None:
                        results.put(Result(key=clip.sample.key, error=_sample_error(item[2])))
                    else:
                        results.put(self._finish(clip))
        except BaseException as e:  # noqa: BLE001 - handed to the stage's thread
            failure.append(e)

    def _add(self, clip: _Clip, idx: int, det: Detections) -> None:
        assert self.backend is not None
        if self.backend.layout != CANONICAL:
            src = self.backend.layout
            det.keypoints, det.keypoint_scores = L.convert(
                det.keypoints, det.keypoint_scores, src, CANONICAL
            )
            if det.keypoint_3d is not None:
                det.keypoint_3d, _ = L.convert(det.keypoint_3d, None, src, CANONICAL)
        if self.config.lift != "3d":
            det.keypoint_3d = None
        if len(det):
            quality = det.box_scores * det.keypoint_scores.mean(axis=-1)
            keep = quality >= self.config.min_person_score
            if not keep.all():
                det = Detections(
                    det.boxes[keep], det.box_scores[keep], det.keypoints[keep],
                    det.keypoint_scores[keep],
                    None if det.keypoint_3d is None else det.keypoint_3d[keep],
                )
        clip.tracker.update(det)
        clip.dets.append(det)
        clip.frame_index.append(idx)

    def _finish(self, clip: _Clip) -> Result:
        assert self.backend is not None
        cfg = self.config
        v = L.num_joints(CANONICAL)
        tracked = select_tracks(clip.tracker.tracks, clip.dets, cfg.max_persons, v)
        kp, sc, k3 = tracked.keypoint, tracked.keypoint_score, tracked.keypoint_3d
        if cfg.layout != CANONICAL:
            kp, sc = L.convert(kp, sc, CANONICAL, cfg.layout)
            if k3 is not None:
                k3, _ = L.convert(k3, None, CANONICAL, cfg.layout)
        t_len = len(clip.frame_index)
        present = np.abs(tracked.box).sum(axis=-1) > 0  # (M, T): frames where a track is seen
        arrays: dict[str, Any] = {
            "keypoint": kp.astype(np.float32),
            "keypoint_score": sc.astype(np.float32),
            "track_id": tracked.track_id,
            "box": tracked.box,
            "frame_index": np.asarray(clip.frame_index, np.int64),
            "fps": np.float64(clip.fps),
            "img_shape": np.array([clip.height, clip.width], np.int64),
            "layout": np.str_(cfg.layout),
            "backend": np.str_(self.backend.name),
            "model": np.str_(self.backend.model_name),
            "model_sha256": np.str_(self.backend.model_sha256),
        }
        if cfg.lift == "3d":
            arrays["keypoint_3d"] = (
                k3 if k3 is not None else np.zeros((*kp.shape[:-1], 3), np.float32)
            ).astype(np.float32)
        payload = npz_bytes(arrays)
        m = kp.shape[0]
        mean_score = float(sc[present].mean()) if present.any() else 0.0
        record = {
            "frames": t_len,
            "persons": m,
            "dropped_persons": int(tracked.dropped),
            "frames_with_person": int(present.any(axis=0).sum()) if m else 0,
            "mean_score": round(mean_score, 4),
            "seconds": round(time.perf_counter() - clip.t0, 3),
        }
        return Result(
            key=clip.sample.key,
            members={"pose.npz": payload},
            record=record,
            flags=[] if m else ["no_person"],
        )
