"""Pose backends behind one small protocol, chosen by name.

A backend turns a batch of RGB frames (possibly from several clips) into per-frame
:class:`~tmor.pipeline.pose.tracking.Detections` in its native joint layout, in the pixel
coordinates of the frames it was given. Heavy imports (torch, ultralytics, mediapipe, rtmlib,
mmpose) happen in :meth:`PoseBackend.load`, never at import time of this package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from tmor.pipeline.pose.tracking import Detections
from tmor.plugins import Registry


class PoseBackend(ABC):
    """One pose model. Instances hold configuration until :meth:`load` is called."""

    #: registry name
    name: str = ""
    #: native joint layout of :meth:`infer` (see :mod:`tmor.skeleton.layouts`)
    layout: str = "coco17"
    #: True when detections carry metric ``keypoint_3d``
    has_3d: bool = False
    #: True when the backend's results depend on the order of frames within a stream
    stateful: bool = False
    #: True when :meth:`infer` takes frames at their native size (the stage does not resize)
    native_frames: bool = False

    def __init__(self, model: str | None = None, device: str = "auto", **options: Any):
        self.model = model
        self.device = device
        self.options = options
        self.model_name = str(model or "")
        self.model_sha256 = ""

    @abstractmethod
    def load(self) -> None:
        """Import the backend's package and load the model, or raise
        :class:`~tmor.errors.PluginUnavailable`."""

    @abstractmethod
    def infer(
        self, frames: Sequence[np.ndarray], streams: Sequence[Hashable] | None = None
    ) -> list[Detections]:
        """Detect people in RGB uint8 frames (H, W, 3); ``streams[i]`` names the clip of frame
        i (stateful backends keep per-clip state; frames of one stream come in order)."""

    def infer_scaled(self, frames: Sequence[np.ndarray], scales: Sequence[tuple[float, float]],
                     streams: Sequence[Hashable] | None = None) -> list[Detections]:
        """:meth:`infer`, with each frame's boxes and keypoints multiplied by ``scales[i]`` =
        (sx, sy): the clip's pixels per pixel of the frame given."""
        dets = self.infer(frames, streams)
        for det, (sx, sy) in zip(dets, scales, strict=True):
            det.keypoints = det.keypoints * np.array([sx, sy], np.float32)
            det.boxes = det.boxes * np.array([sx, sy, sx, sy], np.float32)
        return dets

    def prepare(self, frames: Sequence[np.ndarray]) -> Any:
        """Host-side work on a batch, done in the stage's thread while the model runs the
        previous batch; what it returns goes to :meth:`infer_prepared`."""
        return frames

    def infer_prepared(self, prepared: Any, scales: Sequence[tuple[float, float]],
                       streams: Sequence[Hashable] | None = None) -> list[Detections]:
        """:meth:`infer_scaled` of a batch :meth:`prepare` returned."""
        return self.infer_scaled(prepared, scales, streams)

    def input_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) to decode frames at for this model, or None for the clip's size."""
        return None

    def canvas_of(self, width: int, height: int) -> Hashable:
        """Frames with different keys go to different model calls (None: any frames together)."""
        return None

    def close_stream(self, stream: Hashable) -> None:
        """Forget the per-clip state of ``stream`` (stateful backends)."""

    def close(self) -> None:
        """Release the model."""

    def card(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_name, "model_sha256": self.model_sha256,
                "layout": self.layout, "device": self.device}


#: backend name -> PoseBackend subclass
BACKENDS = Registry("pose backend", {
    "ultralytics": "tmor.pipeline.pose.ultralytics_backend:UltralyticsBackend",
    "mediapipe": "tmor.pipeline.pose.mediapipe_backend:MediaPipeBackend",
    "rtmlib": "tmor.pipeline.pose.rtmlib_backend:RTMLibBackend",
    "mmpose": "tmor.pipeline.pose.mmpose_backend:MMPoseBackend",
})


def get_backend(name: str, model: str | None = None, device: str = "auto", **options: Any
                ) -> PoseBackend:
    """Instantiate (not load) the backend registered as ``name``."""
    return BACKENDS.get(name)(model=model, device=device, **options)
