"""The ``pose`` stage: tracked 2D (and 3D) skeletons of the people in every fetched clip.

Several clips are in flight at once, each decoded by :func:`tmor.pipeline.video.iter_frames` in its
own thread (bounded queue, sampled to the target fps, resized once to the model's input size);
their frames are pooled round-robin into batches of ``batch_size`` for one model call; the
detections go back to each clip's :class:`~tmor.pipeline.pose.tracking.Tracker`; a clip whose
frames are all processed is finalized (top-M selection, layout conversion) and yielded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tmor.errors import ErrorClass, PluginUnavailable, SampleError
from tmor.pipeline.pose import PoseBackend, get_backend
from tmor.pipeline.pose.tracking import Detections, Tracker, select_tracks
from tmor.pipeline.stage import Result, Sample, Stage
from tmor.skeleton import layouts as L
from tmor.skeleton.npz import npz_bytes

CANONICAL = "coco17"


@dataclass
class PoseConfig:
    """Options of ``tmor-data extract-pose`` (every field is also a CLI option)."""

    backend: str = "ultralytics"  # ultralytics | mediapipe | rtmlib | mmpose
    model: str | None = None  # a local model file or a backend model name; None: backend default
    device: str = "auto"  # auto | cpu | cuda[:N]
    fps: float | None = None  # target frame rate; None: the clip's own, capped at max_fps
    max_fps: float = 30.0
    imgsz: int = 640  # long side of the frames given to the model (ultralytics)
    batch_size: int = 32  # frames per model call, pooled across clips
    clips_in_flight: int = 4  # clips decoded concurrently (one thread each)
    queue_size: int = 32  # decoded frames buffered per clip
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
    frames: Iterator[tuple[int, np.ndarray]]
    width: int
    height: int
    scale: tuple[float, float]
    fps: float
    t0: float
    tracker: Tracker
    dets: list[Detections] = field(default_factory=list)
    frame_index: list[int] = field(default_factory=list)
    done: bool = False
    error: SampleError | None = None


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
    def _open(self, sample: Sample) -> _Clip:
        from tmor.pipeline import video

        assert self.backend is not None
        data = sample.members.get("fetch", {}).get("mp4")
        if not data:
            raise SampleError(ErrorClass.BAD_INPUT, "no mp4 member in the fetch shard")
        try:
            info = video.probe(data)
        except video.VideoDecodeError as e:
            raise SampleError(ErrorClass.BAD_INPUT, str(e)) from e
        cfg = self.config
        target = cfg.fps or min(info.fps or cfg.max_fps, cfg.max_fps)
        step = video.sample_step(info.fps, target)
        size = self.backend.input_size(info.width, info.height)
        w, h = size or (info.width, info.height)
        return _Clip(
            sample=sample,
            frames=video.iter_frames(data, fps=target, size=size, queue_size=cfg.queue_size),
            width=info.width,
            height=info.height,
            scale=(info.width / w, info.height / h),
            fps=(info.fps / step) if info.fps else float(target),
            t0=time.perf_counter(),
            tracker=Tracker(max_age=cfg.max_age),
        )

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        from tmor.pipeline.video import VideoDecodeError

        if self.backend is None:
            self.setup()
        assert self.backend is not None
        cfg = self.config
        pending = iter(samples)
        active: list[_Clip] = []
        exhausted = False
        while True:
            while not exhausted and len(active) < max(1, cfg.clips_in_flight):
                sample = next(pending, None)
                if sample is None:
                    exhausted = True
                    break
                try:
                    active.append(self._open(sample))
                except SampleError as e:
                    yield Result(key=sample.key, error=e)
            if not active:
                return
            batch: list[tuple[_Clip, int, np.ndarray]] = []
            live = [c for c in active if not c.done]
            while live and len(batch) < cfg.batch_size:
                for clip in list(live):
                    try:
                        idx, frame = next(clip.frames)
                    except StopIteration:
                        clip.done = True
                        live.remove(clip)
                        continue
                    except VideoDecodeError as e:
                        clip.done = True
                        clip.error = SampleError(ErrorClass.BAD_INPUT, str(e))
                        live.remove(clip)
                        continue
                    batch.append((clip, idx, frame))
                    if len(batch) >= cfg.batch_size:
                        break
            if batch:
                frames = [f for _, _, f in batch]
                dets = self.backend.infer(frames, [c.sample.key for c, _, _ in batch])
                for (clip, idx, _), det in zip(batch, dets, strict=True):
                    if clip.error is None:
                        self._add(clip, idx, det)
            for clip in [c for c in active if c.done]:
                active.remove(clip)
                self.backend.close_stream(clip.sample.key)
                if clip.error is not None:
                    yield Result(key=clip.sample.key, error=clip.error)
                else:
                    yield self._finish(clip)

    def _add(self, clip: _Clip, idx: int, det: Detections) -> None:
        assert self.backend is not None
        sx, sy = clip.scale
        det.keypoints = det.keypoints * np.array([sx, sy], np.float32)
        det.boxes = det.boxes * np.array([sx, sy, sx, sy], np.float32)
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
