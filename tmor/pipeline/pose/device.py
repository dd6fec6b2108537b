"""YOLO pose on the device: uint8 frames in, people in the clip's pixels out, one copy each way.

Per batch (frames of one canvas: the decoder already resized them so that their long side is the
model's input size): the frames are letterboxed into one uint8 canvas (top-left, gray 114) in a
pinned staging buffer and copied to the device at once; there they are normalized (fp16 / bf16 on
CUDA) and run through the network in one forward; NMS runs over the whole batch at once
(``torchvision.ops.batched_nms``, the frame as the group); boxes and keypoints are rescaled to each
clip's own pixels there; one device-to-host copy brings the kept rows back. The same code runs on
CPU torch. Imports torch: load lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tmor.pipeline.pose.tracking import Detections

PAD = 114
STRIDE = 32


def canvas_of(width: int, height: int) -> tuple[int, int]:
    """(height, width) of the canvas a ``width`` x ``height`` frame (already at the model's input
    size) is letterboxed into: rounded up to the stride. The stage batches frames by canvas, so a
    frame's result never depends on the frames it shares a batch with."""
    return -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE


class DevicePose:
    """The device half of the pose stage for one YOLO pose network (``net(x) -> (B, C, A)``)."""

    def __init__(self, net: Any, device: str, dtype: torch.dtype, conf: float, iou: float,
                 max_det: int, nc: int = 1, kpt_shape: tuple[int, int] = (17, 3)):
        self.net, self.device, self.dtype = net, torch.device(device), dtype
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.nc, self.nk, self.kd = nc, int(kpt_shape[0]), int(kpt_shape[1])
        self._pin = self.device.type == "cuda"
        #: pinned buffers used in turn: one being filled, one queued, one on the device
        self._buffers: list[torch.Tensor | None] = [None, None, None]
        self._turn = 0

    # -- host side (the stage's thread) ----------------------------------------------------------
    def prepare(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Letterbox the frames into a pinned uint8 canvas (N, ch, cw, 3) and note their (w, h).

        Runs on the host while the device works on the previous batch; a buffer is filled again
        only three batches later, when the stage's bounded hand-over guarantees it was used."""
        n = len(frames)
        ch = -(-max(f.shape[0] for f in frames) // STRIDE) * STRIDE
        cw = -(-max(f.shape[1] for f in frames) // STRIDE) * STRIDE
        total = n * ch * cw * 3
        buf = self._buffers[self._turn]
        if buf is None or buf.numel() < total:
            buf = self._buffers[self._turn] = torch.empty(total, dtype=torch.uint8,
                                                          pin_memory=self._pin)
        self._turn = (self._turn + 1) % len(self._buffers)
        canvas = buf[:total].view(n, ch, cw, 3)
        host = canvas.numpy()
        for i, f in enumerate(frames):
            h, w = f.shape[:2]
            host[i, :h, :w] = f
            host[i, h:] = PAD
            host[i, :h, w:] = PAD
        return canvas, [(f.shape[1], f.shape[0]) for f in frames]

    # -- device side ---------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, prepared: tuple[torch.Tensor, list[tuple[int, int]]],
            scales: Sequence[tuple[float, float]] | None = None) -> list[Detections]:
        """A prepared batch -> each frame's people, in the frame's pixels times ``scales[i]`` =
        (sx, sy) (the clip's pixels per input pixel)."""
        canvas, sizes = prepared
        n = len(sizes)
        if n == 0:
            return []
        if self.device.type == "cpu":  # numpy converts uint8 several times faster than CPU torch
            x = np.multiply(canvas.numpy(), np.float32(1 / 255), dtype=np.float32)
            x = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.dtype)
        else:  # NCHW view of channels-last memory
            x = canvas.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            x = x.to(self.dtype).mul_(1 / 255)
        info = torch.tensor([[*(scales[i] if scales else (1.0, 1.0)), w, h]
                             for i, (w, h) in enumerate(sizes)], dtype=torch.float32)
        pred = self.net(x)
        if isinstance(pred, (tuple, list)):
            pred = pred[0]
        info = info.to(self.device, non_blocking=True)
        rows = self._nms(pred, info[:, :2], info[:, 2:])
        return self._split(rows.cpu().numpy(), n)

    def __call__(self, frames: Sequence[np.ndarray],
                 scales: Sequence[tuple[float, float]] | None = None) -> list[Detections]:
        """:meth:`prepare` then :meth:`run`: RGB uint8 frames (H, W, 3) at the model's input
        size -> their people."""
        return self.run(self.prepare(frames), scales) if frames else []

    def _nms(self, pred: torch.Tensor, scale: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
        """(B, 4 + nc + nk*kd, A) raw output -> (K, 1 + 4 + 1 + nk*kd) float32 rows (frame,
        box xyxy, score, keypoints) kept by NMS, in the frames' own pixels, sorted by frame then
        descending score, at most ``max_det`` per frame."""
        import torchvision

        nc = self.nc
        p = pred.transpose(1, 2)  # (B, A, C)
        score, cls = p[..., 4:4 + nc].max(-1)
        b, a = (score > self.conf).nonzero(as_tuple=True)
        width = 1 + 4 + 1 + self.nk * self.kd
        if b.numel() == 0:
            return torch.zeros((0, width), dtype=torch.float32, device=pred.device)
        cand = p[b, a].float()
        s = score[b, a].float()
        xy, wh = cand[:, :2], cand[:, 2:4] / 2
        boxes = torch.cat((xy - wh, xy + wh), 1)
        keep = torchvision.ops.batched_nms(boxes, s, b * nc + cls[b, a], self.iou)
        kb = b[keep]
        kb, perm = torch.sort(kb, stable=True)  # by frame, each frame's by descending score
        keep = keep[perm]
        first = torch.searchsorted(kb, kb, right=False)
        rank = torch.arange(kb.numel(), device=kb.device) - first
        keep, kb = keep[rank < self.max_det], kb[rank < self.max_det]
        box = boxes[keep]
        lim = limit[kb]
        box = torch.stack((box[:, 0].clamp(0) .minimum(lim[:, 0]),
                           box[:, 1].clamp(0).minimum(lim[:, 1]),
                           box[:, 2].clamp(0).minimum(lim[:, 0]),
                           box[:, 3].clamp(0).minimum(lim[:, 1])), 1)
        sc = scale[kb]
        box = box * sc.repeat(1, 2)
        kpt = cand[keep, 4 + nc:].view(-1, self.nk, self.kd).clone()
        kpt[..., :2] *= sc[:, None, :]
        return torch.cat((kb.float()[:, None], box, s[keep, None], kpt.flatten(1)), 1)

    def _split(self, rows: np.ndarray, n: int) -> list[Detections]:
        """Rows of the whole batch -> one Detections per frame."""
        nk, kd = self.nk, self.kd
        bounds = np.searchsorted(rows[:, 0], np.arange(n + 1) - 0.5)
        out = []
        for i in range(n):
            r = rows[bounds[i]:bounds[i + 1]]
            kpt = r[:, 6:].reshape(len(r), nk, kd)
            out.append(Detections(
                np.ascontiguousarray(r[:, 1:5]), np.ascontiguousarray(r[:, 5]),
                np.ascontiguousarray(kpt[..., :2]),
                np.ascontiguousarray(kpt[..., 2] if kd == 3 else np.ones(kpt.shape[:2],
                                                                          np.float32))))
        return out
