"""The ``pose`` stage: tracked 2D (and 3D) skeletons of the people in every fetched clip.

Four things run at once, joined by bounded queues:
decode workers (:mod:`~tmor.pipeline.pose.feed`: ``decode_workers`` threads, clips decoded in
parallel, frames of whichever clip has them ready) -> this thread (frames batched by canvas, each
batch prepared on the host: the pinned canvas for the ultralytics tensor engine) -> a device
thread (one model call per ``batch_size`` frames) -> a tracker thread (per-clip
:class:`~tmor.pipeline.pose.tracking.Tracker`, top-M selection, layout conversion, npz
encoding) -> results. With ``lift='motionbert:PATH'`` a fifth, the lift thread, sits between the
tracker and the results: it gathers finished clips until their tracks' chunks and mirror images
make ``lift_batch_size`` sequences (or the input ends), lifts them all in one batched pass on the
worker's device (:class:`~tmor.pipeline.pose.motionbert.MotionBERTLifter`), and encodes their
npz, while the other threads go on with the next clips' 2D work.
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


def lift_spec(value: str) -> str | None:
    """Rule of ``lift``: none, 3d or motionbert:PATH."""
    lifter, _, checkpoint = value.partition(":")
    if value in ("none", "3d") or (lifter == "motionbert" and checkpoint):
        return None
    return "must be none, 3d or motionbert:PATH (a MotionBERT checkpoint)"


@rules(backend=" | ".join(BACKENDS), device=torch_device, fps="> 0", max_fps="> 0",
       imgsz=">= 32", batch_size=">= 1", decode_workers=">= 1", codec_threads=">= 0",
       clips_in_flight=">= 1", queue_size=">= 1", max_persons=">= 1", lift=lift_spec,
       lift_units="normalized | pixels", lift_batch_size=">= 1",
       lift_precision="auto | fp32 | fp16 | bf16", layout=known_layout, conf="[0, 1]",
       min_person_score="[0, 1]", max_age=">= 0")
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
    # none | 3d (keypoint_3d in metres, from the mediapipe backend) | motionbert:PATH (a released
    # MotionBERT checkpoint lifts every kept track: keypoint_3d in h36m17, see pose/motionbert.py)
    lift: str = "none"
    lift_units: str = "normalized"  # motionbert: normalized (infer_wild.py) | pixels (--pixel)
    lift_batch_size: int | None = None  # motionbert sequences per call; None: 64 on CUDA, 1
    lift_precision: str = "auto"  # motionbert: auto (fp16 on CUDA, else fp32) | fp32|fp16|bf16
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


@dataclass
class _Tracked:
    """A finished clip: its npz arrays and ledger record, and the COCO-17 tracks to lift."""

    key: str
    arrays: dict[str, Any]
    record: dict[str, Any]
    keypoint: np.ndarray  # (M, T, 17, 2) coco17 pixels
    keypoint_score: np.ndarray  # (M, T, 17)
    present: np.ndarray  # (M, T) bool: frames where each track is seen
    size: tuple[int, int]  # (width, height) of the clip


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
        self.lifter: Any = None
        self._lifter_card: dict[str, Any] | None = None  # kept after teardown, for the card

    # -- lifecycle -----------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.config
        lifter, _, checkpoint = cfg.lift.partition(":")
        if wrong := lift_spec(cfg.lift):
            raise PluginUnavailable(f"--lift {cfg.lift!r} {wrong}")
        L.num_joints(cfg.layout)  # raises on an unknown layout
        if lifter == "motionbert":  # before the pose model: a bad checkpoint fails fast
            from tmor.pipeline.pose.motionbert import MotionBERTLifter

            self.lifter = MotionBERTLifter(checkpoint, cfg.device, cfg.lift_units,
                                           cfg.lift_batch_size, cfg.lift_precision)
            self.lifter.load()
            self._lifter_card = self.lifter.card()
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
        self.lifter = None

    def card(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": asdict(self.config)}
        if self.backend is not None:
            out["backend"] = self.backend.card()
        lifter, _, checkpoint = self.config.lift.partition(":")
        if self._lifter_card is None and lifter == "motionbert" and checkpoint:
            from tmor.pipeline.pose.motionbert import checkpoint_card

            self._lifter_card = checkpoint_card(checkpoint, self.config.lift_units)
        if self._lifter_card is not None:
            out["lifter"] = self._lifter_card
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
        finished: queue.Queue | None = None  # tracked clips to the lift thread
        threads = [threading.Thread(target=self._device, args=(to_device, work, failure),
                                    name="tmor-device", daemon=True)]
        if self.lifter is not None:
            finished = queue.Queue(maxsize=4 * self.lifter.batch_size)
            threads.append(threading.Thread(target=self._lift, args=(finished, results, failure),
                                            name="tmor-lift", daemon=True))
        threads.append(threading.Thread(target=self._track, args=(work, results, finished,
                                                                  failure),
                                        name="tmor-track", daemon=True))
        for thread in threads:
            thread.start()
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
            for thread in threads:
                thread.join()
            if failure:
                raise failure[0]
            yield from ready()
        finally:
            feed.close()
            if any(thread.is_alive() for thread in threads):
                failure.append(RuntimeError("stopped"))
                for q in [q for q in (to_device, work, finished) if q is not None]:
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

    def _track(self, work: queue.Queue, results: queue.Queue, finished: queue.Queue | None,
               failure: list[BaseException]) -> None:
        """The tracker thread: detections into each clip's tracker, finished clips to npz (or
        to the lift thread)."""
        try:
            while True:
                got = work.get()
                if got is None or failure:
                    if finished is not None:
                        _hand_over(finished, None, failure)
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
                    elif finished is not None:
                        _hand_over(finished, self._tracked(clip), failure)
                    else:
                        results.put(self._result(self._tracked(clip)))
        except BaseException as e:  # noqa: BLE001 - handed to the stage's thread
            failure.append(e)

    def _lift(self, finished: queue.Queue, results: queue.Queue,
              failure: list[BaseException]) -> None:
        """The lift thread: tracked clips gathered until their tracks fill a network call (or the
        input ends), lifted together, then encoded."""
        lifter = self.lifter
        try:
            pending: list[_Tracked] = []
            sequences, ending = 0, False
            while not ending:
                got = finished.get()
                if failure:
                    return
                if got is None:
                    ending = True
                else:
                    pending.append(got)
                    sequences += 2 * sum(-(-int(n) // lifter.maxlen)  # chunks + mirrored
                                         for n in got.present.sum(axis=1))
                    if sequences < lifter.batch_size:
                        continue
                lifted = lifter.lift_clips([(d.keypoint, d.keypoint_score, d.present,
                                             d.size) for d in pending]) if pending else []
                for d, k3 in zip(pending, lifted, strict=True):
                    d.arrays.update(keypoint_3d=k3, layout_3d=np.str_(lifter.layout),
                                    lifter=np.str_(lifter.name),
                                    lifter_sha256=np.str_(lifter.sha256),
                                    lifter_units=np.str_(lifter.units))
                    results.put(self._result(d))
                pending, sequences = [], 0
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

    def _tracked(self, clip: _Clip) -> _Tracked:
        """A finished clip's kept tracks as the npz arrays and ledger record (no 3D lift yet)."""
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
        return _Tracked(clip.sample.key, arrays, record, tracked.keypoint,
                        tracked.keypoint_score, present, (clip.width, clip.height))

    @staticmethod
    def _result(done: _Tracked) -> Result:
        return Result(key=done.key, members={"pose.npz": npz_bytes(done.arrays)},
                      record=done.record, flags=[] if done.record["persons"] else ["no_person"])
