"""RTMPose / HRNet and other MMPose models through ``MMPoseInferencer`` (optional extra).

Not part of the core install (it needs mmcv). Install, e.g.::

    pip install -U openmim && mim install mmengine "mmcv>=2.0.1" "mmdet>=3.1.0" "mmpose>=1.1.0"

``model`` is an MMPose model alias or config name (e.g. ``rtmpose-m_8xb256-420e_body8-256x192``
or ``human``); ``weights`` (option) a local checkpoint file.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from tmor.devices import resolve_device
from tmor.errors import PluginUnavailable
from tmor.hashing import file_sha256
from tmor.pipeline.pose import PoseBackend
from tmor.pipeline.pose.tracking import Detections
from tmor.plugins import require, require_file

_INSTALL = 'pip install -U openmim && mim install mmengine "mmcv>=2.0.1" "mmdet>=3.1.0" mmpose'


class MMPoseBackend(PoseBackend):
    name = "mmpose"
    layout = "coco17"

    def __init__(self, model: str | None = None, device: str = "auto",
                 weights: str | None = None, **options: Any):
        super().__init__(model or "human", device, **options)
        self.weights = weights
        self._inferencer: Any = None

    def load(self) -> None:
        require("mmcv", _INSTALL)
        apis = require("mmpose.apis", _INSTALL)
        if self.weights:
            self.model_sha256 = file_sha256(require_file(self.weights, "mmpose checkpoint"))
        self.device = resolve_device(self.device)
        try:
            self._inferencer = apis.MMPoseInferencer(
                pose2d=self.model, pose2d_weights=self.weights, device=self.device
            )
        except Exception as e:  # noqa: BLE001 - config / download failure, said once
            raise PluginUnavailable(f"cannot build MMPoseInferencer({self.model!r}): {e}") from e

    def infer(
        self, frames: Sequence[np.ndarray], streams: Sequence[Hashable] | None = None
    ) -> list[Detections]:
        out = []
        for frame in frames:
            result = next(self._inferencer(np.ascontiguousarray(frame[..., ::-1]),
                                           return_vis=False))
            people = result["predictions"][0]
            if not people:
                out.append(Detections.empty(17))
                continue
            kp = np.array([p["keypoints"] for p in people], np.float32)
            sc = np.array([p["keypoint_scores"] for p in people], np.float32)
            boxes = np.array([np.ravel(p["bbox"])[:4] for p in people], np.float32)
            box_sc = np.array([float(np.ravel(p.get("bbox_score", 1.0))[0]) for p in people],
                              np.float32)
            out.append(Detections(boxes, box_sc, kp[..., :2], sc))
        return out
