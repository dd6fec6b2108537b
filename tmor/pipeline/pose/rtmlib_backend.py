"""RTMPose / RTMO ONNX models through rtmlib and onnxruntime (COCO-17), local model files only.

``model`` is an RTMO one-stage ``.onnx`` (whole image in, people out) or, with the option
``det_model`` (a YOLOX / RTMDet person detector ``.onnx``), a top-down RTMPose ``.onnx``.
Install: ``pip install rtmlib onnxruntime`` (``onnxruntime-gpu`` for CUDA).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from tmor.errors import PluginUnavailable
from tmor.hashing import file_sha256
from tmor.pipeline.pose import PoseBackend
from tmor.pipeline.pose.tracking import Detections
from tmor.plugins import require, require_file


class RTMLibBackend(PoseBackend):
    name = "rtmlib"
    layout = "coco17"

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        det_model: str | None = None,
        input_size: tuple[int, int] = (640, 640),
        pose_input_size: tuple[int, int] = (192, 256),
        **options: Any,
    ):
        super().__init__(model, device, **options)
        self.det_model = det_model
        self.model_input_size = tuple(input_size)
        self.pose_input_size = tuple(pose_input_size)
        self._impl: Any = None

    def load(self) -> None:
        if not self.model:
            raise PluginUnavailable("the rtmlib backend needs --model PATH (RTMO/RTMPose .onnx)")
        require("onnxruntime", "pip install onnxruntime (or onnxruntime-gpu)")
        rtmlib = require("rtmlib", "pip install rtmlib")
        path = require_file(self.model, "rtmlib pose model (.onnx)")
        self.model_sha256 = file_sha256(path)
        self.model_name = path.name
        dev = "cuda" if self.device.startswith("cuda") else "cpu"
        if self.device == "auto":
            import onnxruntime as ort

            dev = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        self.device = dev
        if self.det_model:
            det = require_file(self.det_model, "rtmlib person detector (.onnx)")
            self._impl = rtmlib.Body(
                det=str(det), det_input_size=self.model_input_size, pose=str(path),
                pose_input_size=self.pose_input_size, backend="onnxruntime", device=dev,
            )
        else:
            self._impl = rtmlib.RTMO(
                onnx_model=str(path), model_input_size=self.model_input_size,
                backend="onnxruntime", device=dev,
            )

    def infer(
        self, frames: Sequence[np.ndarray], streams: Sequence[Hashable] | None = None
    ) -> list[Detections]:
        out = []
        for frame in frames:
            kp, sc = self._impl(np.ascontiguousarray(frame[..., ::-1]))  # rtmlib reads BGR
            kp = np.asarray(kp, np.float32).reshape(-1, 17, 2)
            sc = np.asarray(sc, np.float32).reshape(-1, 17)
            if len(kp) == 0:
                out.append(Detections.empty(17))
                continue
            boxes = np.concatenate([kp.min(1), kp.max(1)], axis=1).astype(np.float32)
            out.append(Detections(boxes, sc.mean(1), kp, sc))
        return out
