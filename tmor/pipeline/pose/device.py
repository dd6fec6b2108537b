"""YOLO pose on the device: uint8 frames in, people in the clip's pixels out, one copy each way.

Per batch (frames of one canvas, at the clip's own size: fetch leaves them at 360p at most): each
frame goes to the model's input size (long side ``imgsz``) and is letterboxed into one canvas
(top-left, gray 114); the canvas is normalized (fp16 / bf16 on CUDA) and run through the network
in one forward; NMS runs over the whole batch in one ``torchvision.ops.nms`` call (each frame's
boxes shifted apart: :func:`nms_by_group`); boxes and keypoints are rescaled to each clip's own
pixels there; one device-to-host copy brings the kept rows back. On CUDA the upload of a batch
starts on a side stream as soon as :meth:`DevicePose.prepare` has filled it, so that it overlaps
the forward of the batch before. Frames not at the input size are packed into a
pinned buffer at their own size, copied once and resized on the device (bilinear; antialiased
when shrinking); frames already at it (a 640x360 clip at imgsz 640) are letterboxed on the host
and give the very pixels of a decoder-side resize. The same code runs on CPU torch. Imports
torch: load lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass
class Prepared:
    """A batch as :meth:`DevicePose.prepare` left it on the host.

    ``host``: the letterboxed uint8 canvas (N, ch, cw, 3), or (``runs`` set) the native frames
    packed one after another, to be resized on the device; ``runs``: (first frame, frames, h, w,
    byte offset) of consecutive frames of one native size."""

    host: torch.Tensor
    canvas: tuple[int, int]
    sizes: list[tuple[int, int]]  # (w, h) of each frame at the model's input size
    factors: list[tuple[float, float]]  # the frame's own pixels per input pixel (x, y)
    runs: list[tuple[int, int, int, int, int]] | None = None
    staged: torch.Tensor | None = None  # ``host`` on the device, copied on the side stream
    ready: Any = None  # the event recorded after that copy


class DevicePose:
    """The device half of the pose stage for one YOLO pose network (``net(x) -> (B, C, A)``).

    ``input_size(w, h) -> (w, h)``: the model's input size of a frame (None: frames come at
    it)."""

    def __init__(self, net: Any, device: str, dtype: torch.dtype, conf: float, iou: float,
                 max_det: int, nc: int = 1, kpt_shape: tuple[int, int] = (17, 3),
                 input_size: Callable[[int, int], tuple[int, int]] | None = None):
        self.net, self.device, self.dtype = net, torch.device(device), dtype
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.nc, self.nk, self.kd = nc, int(kpt_shape[0]), int(kpt_shape[1])
        self.input_size = input_size or (lambda w, h: (w, h))
        self._pin = self.device.type == "cuda"
        self.uint8_resize = self.device.type == "cpu"  # CUDA has no uint8 bilinear kernel
        #: the device's stream API (torch.cuda; torch.cpu's stand-ins run the same code) and the
        #: side stream that uploads prepared batches (None: copied when run)
        self.streams: Any = torch.get_device_module(self.device)
        self.upload_stream: Any = (self.streams.Stream(self.device) if self.device.type == "cuda"
                                   else None)
        #: pinned buffers used in turn: one being filled, one queued, one on the device
        self._buffers: list[torch.Tensor | None] = [None, None, None]
        self._turn = 0

    def _buffer(self, nbytes: int) -> torch.Tensor:
        buf = self._buffers[self._turn]
        if buf is None or buf.numel() < nbytes:
            buf = self._buffers[self._turn] = torch.empty(nbytes, dtype=torch.uint8,
                                                          pin_memory=self._pin)
        self._turn = (self._turn + 1) % len(self._buffers)
        return buf[:nbytes]

    # -- host side (the stage's thread) ----------------------------------------------------------
    def prepare(self, frames: Sequence[np.ndarray]) -> Prepared:
        """Fill a pinned uint8 buffer with the batch: the letterboxed canvas when every frame is
        at its input size, else the frames packed for :meth:`run` to resize on the device.

        Runs on the host while the device works on the previous batch; a buffer is filled again
        only three batches later, when the stage's bounded hand-over guarantees it was used."""
        sizes = [tuple(self.input_size(f.shape[1], f.shape[0])) for f in frames]
        ch, cw = canvas_of(max(w for w, _ in sizes), max(h for _, h in sizes))
        factors = [(f.shape[1] / w, f.shape[0] / h) for f, (w, h) in zip(frames, sizes,
                                                                         strict=True)]
        if any(f.shape[:2] != (h, w) for f, (w, h) in zip(frames, sizes, strict=True)):
            return self._pack(frames, (ch, cw), sizes, factors)
        n = len(frames)
        canvas = self._buffer(n * ch * cw * 3).view(n, ch, cw, 3)
        host = canvas.numpy()
        for i, (f, (w, h)) in enumerate(zip(frames, sizes, strict=True)):
            host[i, :h, :w] = f
            host[i, h:] = PAD
            host[i, :h, w:] = PAD
        return self._upload(Prepared(canvas, (ch, cw), sizes, factors))

    def _upload(self, prepared: Prepared) -> Prepared:
        """Start copying the filled buffer to the device on the side stream (returns at once);
        :meth:`_staged` makes the compute stream wait for it."""
        if self.upload_stream is None:
            return prepared
        with self.streams.stream(self.upload_stream):
            prepared.staged = prepared.host.to(self.device, non_blocking=True)
        prepared.ready = self.streams.Event()
        prepared.ready.record(self.upload_stream)
        return prepared

    def _staged(self, prepared: Prepared) -> torch.Tensor:
        """The prepared buffer on the device: the side stream's copy, which the current stream
        waits for (and which the allocator keeps until that stream is done with it), or a copy
        made now."""
        if prepared.staged is None:
            return prepared.host.to(self.device, non_blocking=True)
        current = self.streams.current_stream(self.device)
        current.wait_event(prepared.ready)
        if prepared.staged.device.type == "cuda":
            prepared.staged.record_stream(current)
        return prepared.staged

    def _pack(self, frames: Sequence[np.ndarray], canvas: tuple[int, int],
              sizes: list[tuple[int, int]], factors: list[tuple[float, float]]) -> Prepared:
        """The native frames one after another in one pinned buffer, with their runs of one
        size."""
        buf = self._buffer(sum(f.size for f in frames))
        host = buf.numpy()
        runs: list[list[int]] = []
        offset = 0
        for i, f in enumerate(frames):
            h, w = f.shape[:2]
            host[offset:offset + f.size] = f.reshape(-1)
            if runs and runs[-1][2:4] == [h, w] and sizes[runs[-1][0]] == sizes[i]:
                runs[-1][1] += 1
            else:
                runs.append([i, 1, h, w, offset])
            offset += f.size
        return self._upload(Prepared(buf, canvas, sizes, factors, [tuple(r) for r in runs]))

    # -- device side ---------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self, prepared: Prepared,
            scales: Sequence[tuple[float, float]] | None = None) -> list[Detections]:
        """A prepared batch -> each frame's people, in the pixels of the frame as given times
        ``scales[i]`` = (sx, sy) (the clip's pixels per pixel of the frame given)."""
        n = len(prepared.sizes)
        if n == 0:
            return []
        x = self._input(prepared)
        info = torch.tensor([[fx * sx, fy * sy, w, h] for (fx, fy), (sx, sy), (w, h) in zip(
            prepared.factors, scales or [(1.0, 1.0)] * n, prepared.sizes, strict=True)],
            dtype=torch.float32)
        pred = self.net(x)
        if isinstance(pred, (tuple, list)):
            pred = pred[0]
        info = info.to(self.device, non_blocking=True)
        rows = self._nms(pred, info[:, :2], info[:, 2:])
        return self._split(rows.cpu().numpy(), n)

    def _input(self, prepared: Prepared) -> torch.Tensor:
        """The network's input (N, 3, ch, cw) in ``dtype``, in [0, 1], on the device."""
        canvas = self._staged(prepared) if prepared.runs is None else self._letterbox(prepared)
        if canvas.device.type == "cpu":  # numpy converts uint8 several times faster
            x = np.multiply(canvas.numpy(), np.float32(1 / 255), dtype=np.float32)
            return torch.from_numpy(x).permute(0, 3, 1, 2).to(self.dtype)
        x = canvas.permute(0, 3, 1, 2)
        return x.to(self.dtype).mul_(1 / 255)  # NCHW view of channels-last memory

    def _letterbox(self, prepared: Prepared) -> torch.Tensor:
        """The packed frames, copied to the device at once and resized there (bilinear,
        antialiased when shrinking; uint8 on CPU, float then rounded on CUDA) into one uint8
        canvas (N, ch, cw, 3)."""
        import torch.nn.functional as F

        staged = self._staged(prepared)
        canvas = torch.full((len(prepared.sizes), *prepared.canvas, 3), PAD, dtype=torch.uint8,
                            device=self.device)
        for first, count, h, w, offset in prepared.runs or ():
            tw, th = prepared.sizes[first]
            f = staged[offset:offset + count * h * w * 3].view(count, h, w, 3)
            if (h, w) != (th, tw):
                f = f.permute(0, 3, 1, 2)  # NCHW view of channels-last memory
                if not self.uint8_resize:
                    f = f.float()
                f = F.interpolate(f, size=(th, tw), mode="bilinear", align_corners=False,
                                  antialias=th < h or tw < w)
                f = f.round_().clamp_(0, 255).to(torch.uint8) if f.is_floating_point() else f
                f = f.permute(0, 2, 3, 1)
            canvas[first:first + count, :th, :tw] = f
        return canvas

    def __call__(self, frames: Sequence[np.ndarray],
                 scales: Sequence[tuple[float, float]] | None = None) -> list[Detections]:
        """:meth:`prepare` then :meth:`run`: RGB uint8 frames (H, W, 3) of any size -> their
        people in the frames' pixels (times ``scales``)."""
        return self.run(self.prepare(frames), scales) if frames else []

    def _nms(self, pred: torch.Tensor, scale: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
        """(B, 4 + nc + nk*kd, A) raw output -> (K, 1 + 4 + 1 + nk*kd) float32 rows (frame,
        box xyxy, score, keypoints) kept by NMS, in the frames' own pixels, sorted by frame then
        descending score, at most ``max_det`` per frame."""
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
        keep = nms_by_group(boxes, s, b * nc + cls[b, a], self.iou)
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


def nms_by_group(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                 iou: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms`` in one ``nms`` call at any size (torchvision loops over
    the groups in Python above 25,000 boxes on CUDA, 1,000 on the CPU): each group's boxes are
    shifted by group x (span of all coordinates + 1), so boxes of different groups never
    overlap. The shift is made in float64, where it is exact for float32 boxes, so every IoU is
    the unshifted one's (to float64 rounding) and the kept indices are batched_nms's. Returns
    the kept indices in decreasing score order."""
    import torchvision

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    b = boxes.double()
    low = b.min()
    shift = groups.to(b.dtype) * (b.max() - low + 1) - low
    return torchvision.ops.nms(b + shift[:, None], scores.double(), iou)
