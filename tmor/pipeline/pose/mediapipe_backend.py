"""MediaPipe Pose (legacy ``mp.solutions.pose``, mediapipe==0.10.21): one person per frame.

33 image landmarks (pixels, visibility as score) plus 33 metric world landmarks (metres, origin
between the hips) as ``keypoint_3d``. ``model_complexity=1`` is the model the wheel ships, so it
works offline. Video mode (landmark tracking between frames) runs one ``Pose`` per clip stream.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tmor.errors import PluginUnavailable
from tmor.hashing import file_sha256
from tmor.pipeline.pose import PoseBackend
from tmor.pipeline.pose.tracking import Detections
from tmor.plugins import require

_MODEL_FILE = "modules/pose_landmark/pose_landmark_full.tflite"


class MediaPipeBackend(PoseBackend):
    name = "mediapipe"
    layout = "mediapipe33"
    has_3d = True
    stateful = True

    def __init__(
        self,
        model: str | None = None,
        device: str = "cpu",
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        max_side: int = 640,
        **options: Any,
    ):
        super().__init__(model or "mediapipe-pose-full", "cpu", **options)
        self.model_complexity = int(model_complexity)
        self.min_detection_confidence = float(min_detection_confidence)
        self.max_side = int(max_side)
        self._poses: dict[Hashable, Any] = {}

    def load(self) -> None:
        mp = require("mediapipe", "pip install mediapipe==0.10.21")
        if not hasattr(mp, "solutions") or not hasattr(mp.solutions, "pose"):
            raise PluginUnavailable(
                "this mediapipe has no legacy mp.solutions.pose; install mediapipe==0.10.21"
            )
        if self.model_complexity != 1:
            raise PluginUnavailable(
                "mediapipe model_complexity must be 1 offline (the wheel ships only that model)"
            )
        model_file = Path(mp.__file__).parent / _MODEL_FILE
        if not model_file.is_file():
            raise PluginUnavailable(f"mediapipe pose model missing from the wheel: {model_file}")
        self.model_sha256 = file_sha256(model_file)
        self.model_name = f"mediapipe-{mp.__version__}-pose_landmark_full"
        self._mp_pose = mp.solutions.pose

    def input_size(self, width: int, height: int) -> tuple[int, int] | None:
        r = min(1.0, self.max_side / max(width, height))
        return max(16, int(round(width * r))), max(16, int(round(height * r)))

    def _pose(self, stream: Hashable) -> Any:
        if stream not in self._poses:
            self._poses[stream] = self._mp_pose.Pose(
                static_image_mode=False,
                model_complexity=self.model_complexity,
                smooth_landmarks=True,
                enable_segmentation=False,
                min_detection_confidence=self.min_detection_confidence,
            )
        return self._poses[stream]

    def infer(
        self, frames: Sequence[np.ndarray], streams: Sequence[Hashable] | None = None
    ) -> list[Detections]:
        streams = list(streams) if streams is not None else [None] * len(frames)
        out = []
        for frame, stream in zip(frames, streams, strict=True):
            res = self._pose(stream).process(np.ascontiguousarray(frame))
            if res.pose_landmarks is None:
                out.append(Detections.empty(33, with_3d=True))
                continue
            h, w = frame.shape[:2]
            lm = np.array([(p.x * w, p.y * h, p.visibility) for p in res.pose_landmarks.landmark],
                          np.float32)
            world = np.array([(p.x, p.y, p.z) for p in res.pose_world_landmarks.landmark],
                             np.float32)
            xy = lm[:, :2]
            box = np.array([*xy.min(0), *xy.max(0)], np.float32)
            box[[0, 2]] = box[[0, 2]].clip(0, w)
            box[[1, 3]] = box[[1, 3]].clip(0, h)
            out.append(
                Detections(
                    box[None],
                    np.array([float(lm[:, 2].mean())], np.float32),
                    xy[None],
                    lm[None, :, 2],
                    world[None],
                )
            )
        return out

    def close_stream(self, stream: Hashable) -> None:
        pose = self._poses.pop(stream, None)
        if pose is not None:
            pose.close()

    def close(self) -> None:
        for stream in list(self._poses):
            self.close_stream(stream)

    def card(self) -> dict[str, Any]:
        return {**super().card(), "model_complexity": self.model_complexity}
