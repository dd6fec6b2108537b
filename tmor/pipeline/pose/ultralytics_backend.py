"""YOLO pose models through ultralytics (COCO-17).

Three engines:
- ``tensor`` (``.pt`` weights, their default): :class:`~tmor.pipeline.pose.device.DevicePose`:
  frames at the clip's own size, resized on the device so that their long side is ``imgsz``
  (``resize='decoder'``: resized by the decoder's swscale, the pixels of the engines below),
  letterboxed into one canvas per batch, one copy to the device, normalized there (fp16 on CUDA,
  or ``precision='bf16'``: the detection head then runs in fp32, so boxes and keypoints are not
  rounded to bf16's 2-4 px at 256-640 px), one forward (channels-last network and cuDNN
  autotuning on CUDA), NMS over the whole batch on the device, rescaled to the clip's pixels
  there, one copy back. The stage batches frames by :meth:`canvas_of`.
- ``host`` (the path before the device one, kept as a reference): frames resized by the decoder,
  padded per shape on the host, one forward per shape, ultralytics' per-image NMS, one copy back
  per frame.
- ``predict`` (``.onnx`` and other exported formats): ``YOLO.predict`` on the list of frames.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tmor.devices import resolve_device
from tmor.errors import PluginUnavailable
from tmor.hashing import file_sha256
from tmor.pipeline.pose import PoseBackend
from tmor.pipeline.pose.tracking import Detections
from tmor.plugins import require

_MODEL_NAME = re.compile(r"^yolo[\w.]*-pose(\.pt)?$")


class UltralyticsBackend(PoseBackend):
    name = "ultralytics"
    layout = "coco17"

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 50,
        half: bool = True,
        engine: str = "auto",
        precision: str = "auto",
        resize: str = "device",
        **options: Any,
    ):
        super().__init__(model or "yolo11n-pose.pt", device, **options)
        self.imgsz = int(imgsz)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.half = half
        self.engine = engine
        self.precision = precision  # auto (fp16 on CUDA when half, else fp32) | fp16 | bf16 | fp32
        self.resize = resize  # tensor engine: device | decoder (swscale, the host engine's pixels)
        self._yolo: Any = None
        self._net: Any = None
        self._device_pose: Any = None

    def load(self) -> None:
        require("ultralytics", "pip install ultralytics")
        from ultralytics import YOLO

        spec = str(self.model)
        path = Path(spec).expanduser()
        if path.is_file():
            spec = str(path)
            if path.suffix == ".pt":  # ultralytics unpickles it: nothing but a YOLO model
                from tmor.pipeline.pose.yolo_checkpoint import check_yolo_checkpoint

                try:
                    check_yolo_checkpoint(spec)
                except ValueError as e:
                    raise PluginUnavailable(str(e)) from None
            self.model_sha256 = file_sha256(path)
        elif not _MODEL_NAME.match(spec):
            raise PluginUnavailable(
                f"ultralytics pose model file not found: {spec!r}; give a local .pt / .onnx path "
                "or an ultralytics model name such as yolo11n-pose.pt (downloaded on first use)"
            )
        self.device = resolve_device(self.device)
        try:
            self._yolo = YOLO(spec, task="pose")
        except Exception as e:  # noqa: BLE001 - download or format failure, said once
            raise PluginUnavailable(f"cannot load ultralytics model {spec!r}: {e}") from e
        ckpt = getattr(self._yolo, "ckpt_path", None)
        if not self.model_sha256 and ckpt and Path(ckpt).is_file():
            self.model_sha256 = file_sha256(ckpt)
        self.model_name = Path(spec).name
        engine = self.engine
        if engine == "auto":
            engine = "tensor" if spec.endswith(".pt") else "predict"
        if self.resize not in ("device", "decoder"):
            raise PluginUnavailable(f"unknown resize {self.resize!r} (device|decoder)")
        if engine not in ("tensor", "host", "predict"):
            raise PluginUnavailable(f"unknown ultralytics engine {engine!r} (tensor|host|predict)")
        if engine in ("tensor", "host"):
            import torch

            net = self._yolo.model
            if not isinstance(net, torch.nn.Module):
                raise PluginUnavailable(f"{spec!r} is not a torch model; use engine='predict'")
            net = net.fuse() if hasattr(net, "fuse") else net
            dtype = self._dtype(torch)
            self._dtype_t = dtype
            cuda_tensor = engine == "tensor" and self.device.startswith("cuda")
            net = prepare_network(net, self.device, dtype, channels_last=cuda_tensor)
            if cuda_tensor:  # one canvas shape per clip size: cuDNN picks each conv's kernel once
                torch.backends.cudnn.benchmark = True
            self._net = net
            self._nc = len(getattr(net, "names", {0: "person"}))
            self._kpt_shape = tuple(getattr(net, "kpt_shape", (17, 3)))
            if engine == "tensor":
                from tmor.pipeline.pose.device import DevicePose

                self._device_pose = DevicePose(self, self.device, dtype, self.conf, self.iou,
                                               self.max_det, self._nc, self._kpt_shape,
                                               input_size=self.input_size)
        self.engine = engine

    def _dtype(self, torch: Any) -> Any:
        cuda = self.device.startswith("cuda")
        precision = self.precision
        if precision == "auto":
            precision = "fp16" if cuda and self.half else "fp32"
        if precision not in ("fp16", "bf16", "fp32"):
            raise PluginUnavailable(f"unknown precision {precision!r} (auto|fp16|bf16|fp32)")
        if precision != "fp32" and not cuda:
            precision = "fp32"  # CPU convolutions in half precision are slow or missing
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]

    @property
    def native_frames(self) -> bool:  # type: ignore[override]
        """The tensor engine resizes frames on the device (unless ``resize='decoder'``)."""
        return self.engine == "tensor" and self.resize == "device"

    def __call__(self, x: Any) -> Any:
        """The network (through ``self._net``, which a benchmark may replace)."""
        return self._net(x)

    def canvas_of(self, width: int, height: int) -> Any:
        if self.engine != "tensor":
            return None
        from tmor.pipeline.pose.device import canvas_of

        return canvas_of(*self.input_size(width, height))

    def infer_scaled(self, frames: Sequence[np.ndarray], scales: Sequence[tuple[float, float]],
                     streams: Sequence[Hashable] | None = None) -> list[Detections]:
        if self.engine == "tensor" and frames:
            return self._device_pose(frames, scales)  # rescaled on the device
        return super().infer_scaled(frames, scales, streams)

    def prepare(self, frames: Sequence[np.ndarray]) -> Any:
        if self.engine == "tensor" and frames:
            return self._device_pose.prepare(frames)  # the pinned canvas, filled on the host
        return frames

    def infer_prepared(self, prepared: Any, scales: Sequence[tuple[float, float]],
                       streams: Sequence[Hashable] | None = None) -> list[Detections]:
        if self.engine == "tensor" and scales:
            return self._device_pose.run(prepared, scales)
        return super().infer_prepared(prepared, scales, streams)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        r = self.imgsz / max(width, height)
        return max(32, int(round(width * r))), max(32, int(round(height * r)))

    def infer(
        self, frames: Sequence[np.ndarray], streams: Sequence[Hashable] | None = None
    ) -> list[Detections]:
        if not frames:
            return []
        if self.engine == "predict":
            return self._infer_predict(frames)
        if self.engine == "tensor":
            return self._device_pose(frames)
        return self._infer_host(frames)

    def _infer_host(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """One forward per padded frame shape in the batch (no padding a frame to another's)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(frames):
            shape = (-(-f.shape[0] // 32) * 32, -(-f.shape[1] // 32) * 32)
            groups.setdefault(shape, []).append(i)
        out: list[Detections | None] = [None] * len(frames)
        for (ph, pw), idx in groups.items():
            for i, det in zip(idx, self._forward([frames[i] for i in idx], ph, pw), strict=True):
                out[i] = det
        return out  # type: ignore[return-value]

    def _forward(self, frames: Sequence[np.ndarray], ph: int, pw: int) -> list[Detections]:
        import torch
        from ultralytics.utils.nms import non_max_suppression

        batch = np.full((len(frames), ph, pw, 3), 114, np.uint8)
        for i, f in enumerate(frames):
            batch[i, : f.shape[0], : f.shape[1]] = f
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).contiguous()
            x = x.to(self._dtype_t).div_(255.0)
            pred = self._net(x)
            if isinstance(pred, (tuple, list)):
                pred = pred[0]
            out = non_max_suppression(
                pred, self.conf, self.iou, nc=self._nc, max_det=self.max_det
            )
            out = [o.float().cpu().numpy() for o in out]
        nk, kd = self._kpt_shape
        dets = []
        for f, o in zip(frames, out, strict=True):
            boxes = o[:, :4].copy()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, f.shape[1])
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, f.shape[0])
            kpt = o[:, 6:].reshape(len(o), nk, kd)
            dets.append(
                Detections(
                    boxes.astype(np.float32),
                    o[:, 4].astype(np.float32),
                    kpt[..., :2].astype(np.float32),
                    (kpt[..., 2] if kd == 3 else np.ones(kpt.shape[:2])).astype(np.float32),
                )
            )
        return dets

    def _infer_predict(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]  # ultralytics reads BGR
        kwargs: dict[str, Any] = {}
        if self.half and self.device.startswith("cuda"):
            kwargs["half"] = True
        results = self._yolo.predict(
            bgr,
            imgsz=self.imgsz,
            conf=self.conf,
            iou=self.iou,
            max_det=self.max_det,
            device=self.device,
            verbose=False,
            **kwargs,
        )
        dets = []
        for r in results:
            if r.keypoints is None or r.boxes is None or len(r.boxes) == 0:
                dets.append(Detections.empty(17))
                continue
            kd = r.keypoints.data.cpu().numpy().astype(np.float32)
            dets.append(
                Detections(
                    r.boxes.xyxy.cpu().numpy().astype(np.float32),
                    r.boxes.conf.cpu().numpy().astype(np.float32),
                    kd[..., :2],
                    kd[..., 2] if kd.shape[-1] == 3 else np.ones(kd.shape[:2], np.float32),
                )
            )
        return dets

    def close(self) -> None:
        self._net = None
        self._yolo = None
        self._device_pose = None

    def card(self) -> dict[str, Any]:
        return {**super().card(), "imgsz": self.imgsz, "conf": self.conf, "engine": self.engine,
                "precision": self.precision, "resize": self.resize}


def prepare_network(net: Any, device: str, dtype: Any, channels_last: bool = False) -> Any:
    """A YOLO pose network ready for inference: eval, on ``device``, in ``dtype``, frozen;
    ``channels_last``: weights in the channels-last layout of the input canvas (else cuDNN
    re-lays them out at every forward). In bf16 the last module (the detection head, which
    decodes boxes and keypoints into pixels) stays fp32 and gets fp32 inputs: bf16's 8-bit
    mantissa would round a coordinate near 512 px to a multiple of 2 px (4 px above 512)."""
    import torch

    net = net.eval().to(device).to(dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    head = net.model[-1] if dtype == torch.bfloat16 and hasattr(net, "model") else None
    if head is not None:
        head.float()

        def fp32_inputs(_module: Any, args: tuple) -> tuple:
            def cast(v: Any) -> Any:
                if torch.is_tensor(v) and v.is_floating_point():
                    return v.float()
                return [cast(u) for u in v] if isinstance(v, (list, tuple)) else v

            return tuple(cast(a) for a in args)

        head.register_forward_pre_hook(fp32_inputs)
    for p in net.parameters():
        p.requires_grad_(False)
    return net
