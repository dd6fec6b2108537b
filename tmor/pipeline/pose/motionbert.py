"""3D skeletons of tracked people from their 2D ones: MotionBERT's released checkpoints.

For each track, exactly what MotionBERT's ``infer_wild.py`` computes with
``configs/pose3d/MB_ft_h36m_global_lite.yaml`` (flip on, ``rootrel`` off) for one person:

1. COCO-17 keypoints and scores (pixels) -> H36M-17 by MotionBERT's ``coco2h36m`` rule, the
   score channel averaged like the coordinates;
2. ``crop_scale`` with the scale range [1, 1] over the whole track: the square box around every
   joint with a non-zero score, mapped to [-1, 1], every channel clipped to [-1, 1] (all zeros
   when fewer than 4 joints are seen); ``units='pixels'``: ``infer_wild.py --pixel`` instead,
   (xy - size / 2) / (min(w, h) / 2), no clipping;
3. consecutive chunks of ``maxlen`` (243) frames, the last one shorter;
4. per chunk, the network's output averaged with its output on the horizontally flipped input
   (x negated, left and right joints swapped), flipped back;
5. the root's depth on the chunk's first frame set to 0; ``units='pixels'``: the result times
   min(w, h) / 2, plus (w / 2, h / 2) on x, y.

A track's frames are the frames it was detected in, in order, as ``infer_wild.py`` sees a
person chosen with ``--focus`` (AlphaPose lists a person only where it is detected): a gap is
closed up for the network, and its frames get zeros. Output: (T, 17, 3) float32, H36M-17
(:data:`~tmor.skeleton.layouts.JOINTS` ``h36m17``).

Batching (:meth:`MotionBERTLifter.run`): the chunks of every track given at once and their
mirror images, sorted by length, go through the network ``batch_size`` sequences a call, padded
to the call's longest and masked (see :mod:`~tmor.pipeline.pose.dstformer`), so a chunk's result
does not depend on its batch. On CUDA 64 a call under fp16 autocast by default (``precision``;
a call with a non-finite output is redone in fp32); on the CPU one a call, in fp32 (larger calls
measured slower per frame there: the MLP's activations leave the cache).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tmor.errors import PluginUnavailable

NAME = "motionbert"
LAYOUT_3D = "h36m17"
UNITS = ("normalized", "pixels")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: H36M-17 joint j of a horizontally flipped skeleton is joint FLIP[j] of the original
FLIP = np.array([0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13])


def coco_to_h36m(x: np.ndarray) -> np.ndarray:
    """(..., 17, C) COCO-17 -> (..., 17, C) float64 H36M-17 by MotionBERT's rule (every channel,
    scores included, built the same way; the same order of operations)."""
    x = np.asarray(x, np.float64)
    pelvis = (x[..., 11, :] + x[..., 12, :]) * 0.5
    thorax = (x[..., 5, :] + x[..., 6, :]) * 0.5
    return np.stack([
        pelvis, x[..., 12, :], x[..., 14, :], x[..., 16, :], x[..., 11, :], x[..., 13, :],
        x[..., 15, :], (pelvis + thorax) * 0.5, thorax, x[..., 0, :],
        (x[..., 1, :] + x[..., 2, :]) * 0.5, x[..., 5, :], x[..., 7, :], x[..., 9, :],
        x[..., 6, :], x[..., 8, :], x[..., 10, :],
    ], axis=-2)


def crop_scale(motion: np.ndarray) -> np.ndarray:
    """(T, 17, 3) x, y, score -> [-1, 1] in the square box of the joints seen (score != 0)
    over all frames (MotionBERT's ``crop_scale`` at scale 1)."""
    seen = motion[motion[..., 2] != 0][:, :2]
    if len(seen) < 4:
        return np.zeros(motion.shape)
    lo, hi = seen.min(axis=0), seen.max(axis=0)
    scale = max(hi[0] - lo[0], hi[1] - lo[1])
    if scale == 0:
        return np.zeros(motion.shape)
    out = motion.copy()
    out[..., :2] = (motion[..., :2] - (lo + hi - scale) / 2) / scale
    out[..., :2] = (out[..., :2] - 0.5) * 2
    return np.clip(out, -1, 1)


def network_input(keypoint: np.ndarray, score: np.ndarray, width: int, height: int,
                  units: str = "normalized") -> np.ndarray:
    """One track's COCO-17 keypoints (T, 17, 2) pixels and scores (T, 17) -> (T, 17, 3) float32,
    what MotionBERT's wild-video dataset hands the network."""
    motion = coco_to_h36m(np.concatenate([keypoint[..., :2], score[..., None]], axis=-1))
    if units == "pixels":
        motion[..., :2] = (motion[..., :2] - np.array([width, height]) / 2.0) / (
            min(width, height) / 2.0)
        return motion.astype(np.float32)
    return crop_scale(motion).astype(np.float32)


def flip(x: Any) -> Any:
    """Horizontal flip of (..., 17, C) H36M-17 (numpy or torch): x negated, sides swapped."""
    out = x[..., FLIP, :] * 1  # a copy in both libraries
    out[..., 0] = -out[..., 0]
    return out


def chunks_of(length: int, maxlen: int) -> list[slice]:
    """Consecutive ``maxlen``-frame slices of ``range(length)``, the last one shorter."""
    return [slice(s, min(s + maxlen, length)) for s in range(0, length, maxlen)]


def checkpoint_card(path: str, units: str, sha256: str | None = None) -> dict[str, Any]:
    """What the corpus card says of a lifter: name, checkpoint file and sha256 (hashed here when
    not given and the file exists), 3D layout, units."""
    if sha256 is None:
        from tmor.hashing import file_sha256

        sha256 = file_sha256(path) if os.path.isfile(path) else ""
    return {"lifter": NAME, "checkpoint": os.path.basename(str(path)), "sha256": sha256,
            "layout": LAYOUT_3D, "units": units}


class MotionBERTLifter:
    """A released MotionBERT checkpoint on a device; :meth:`lift_clips` lifts tracked clips."""

    name = NAME
    layout = LAYOUT_3D

    def __init__(self, path: str, device: str = "cpu", units: str = "normalized",
                 batch_size: int | None = None, precision: str = "auto"):
        if units not in UNITS:
            raise PluginUnavailable(f"unknown lift units {units!r}; choose {' or '.join(UNITS)}")
        if precision not in PRECISIONS:
            raise PluginUnavailable(f"unknown lift precision {precision!r}; choose one of "
                                    f"{', '.join(PRECISIONS)}")
        self.path, self.device, self.units = path, device, units
        self.batch_size, self.precision = batch_size, precision
        self.sha256 = ""
        self.net: Any = None

    def load(self) -> None:
        """Read the checkpoint (no code runs from it) and build the network, or raise
        :class:`PluginUnavailable` with one line naming the file and what is wrong."""
        import torch

        from tmor.devices import resolve_device
        from tmor.hashing import file_sha256
        from tmor.model.checkpoint import load_checkpoint
        from tmor.pipeline.pose.dstformer import load_dstformer
        from tmor.plugins import require_file

        path = require_file(self.path, "MotionBERT checkpoint")
        try:
            ckpt = load_checkpoint(str(path))
            state = ckpt.get("model_pos", ckpt) if isinstance(ckpt, dict) else None
            if not isinstance(state, dict) or not all(
                    isinstance(v, torch.Tensor) for v in state.values()):
                raise ValueError("no 'model_pos' state dict in it")
            net = load_dstformer(state)
        except (ValueError, OSError, RuntimeError) as e:
            raise PluginUnavailable(f"{path}: not a usable MotionBERT checkpoint: {e}") from None
        self.device = resolve_device(self.device)
        self.net = net.to(self.device)
        self.sha256 = file_sha256(path)
        cuda = self.device.startswith("cuda")
        if self.batch_size is None:
            self.batch_size = 64 if cuda else 1
        if self.precision == "auto":
            self.precision = "fp16" if cuda else "fp32"

    @property
    def maxlen(self) -> int:
        return int(self.net.config.maxlen)

    def card(self) -> dict[str, Any]:
        cfg = self.net.config if self.net is not None else None
        return {**checkpoint_card(self.path, self.units, self.sha256),
                "variant": cfg.variant if cfg else None, "device": self.device,
                "precision": self.precision, "batch_size": self.batch_size}

    # -- the network on many chunks ------------------------------------------------------------
    def run(self, chunks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Network inputs (F_i, 17, 3), F_i <= maxlen -> flip-averaged outputs (F_i, 17, 3)
        float32 (before the root depth and units step). The chunks and their mirror images,
        sorted by length, go ``batch_size`` sequences a call, padded and masked."""
        seqs = [*chunks, *(flip(c) for c in chunks)]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out: list[np.ndarray] = [np.zeros((0, 17, 3), np.float32)] * len(seqs)
        for s in range(0, len(order), self.batch_size):
            group = order[s:s + self.batch_size]
            for i, y in zip(group, self._batch([seqs[i] for i in group]), strict=True):
                out[i] = y
        n = len(chunks)
        return [(out[i] + flip(out[n + i])) / 2.0 for i in range(n)]

    def _batch(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        """One network call on sequences of up to ``maxlen`` frames, padded to the longest."""
        import torch

        lengths = [len(x) for x in seqs]
        x = np.zeros((len(seqs), max(lengths), 17, 3), np.float32)
        mask = np.zeros(x.shape[:2], bool)
        for i, seq in enumerate(seqs):
            x[i, :len(seq)], mask[i, :len(seq)] = seq, True
        xt = torch.from_numpy(x).to(self.device)
        mt = None if mask.all() else torch.from_numpy(mask).to(self.device)
        y = self._forward(xt, mt, self.precision)
        if self.precision != "fp32" and not torch.isfinite(y).all():
            y = self._forward(xt, mt, "fp32")
        y = y.cpu().numpy()
        return [y[i, :f] for i, f in enumerate(lengths)]

    def _forward(self, x: Any, mask: Any, precision: str) -> Any:
        import torch

        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        with torch.inference_mode(), torch.autocast(kind, dtype=dtype,
                                                    enabled=dtype is not None):
            return self.net(x, mask).float()

    # -- tracks and clips ----------------------------------------------------------------------
    def lift_tracks(self, tracks: Sequence[tuple[np.ndarray, np.ndarray, tuple[int, int]]]
                    ) -> list[np.ndarray]:
        """Tracks (keypoint (T, 17, 2) COCO-17 pixels, score (T, 17), (width, height)), every
        frame one the track is seen in -> (T, 17, 3) float32 H36M-17, all chunks of all tracks
        through :meth:`run` together (steps 1-5 of the module doc)."""
        inputs = [network_input(kp, sc, w, h, self.units) for kp, sc, (w, h) in tracks]
        spans = [chunks_of(len(x), self.maxlen) for x in inputs]
        outs = iter(self.run([x[s] for x, ss in zip(inputs, spans, strict=True) for s in ss]))
        result = []
        for ss, (_, _, (w, h)) in zip(spans, tracks, strict=True):
            parts = [next(outs) for _ in ss]
            for p in parts:
                p[0, 0, 2] = 0.0  # the root's depth on each chunk's first frame
            y = np.concatenate(parts) if parts else np.zeros((0, 17, 3), np.float32)
            if self.units == "pixels":
                y = y * (min(w, h) / 2.0)
                y[..., :2] += np.array([w, h]) / 2.0
            result.append(y.astype(np.float32))
        return result

    def lift_clips(self, clips: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray,
                                               tuple[int, int]]]) -> list[np.ndarray]:
        """Clips (keypoint (M, T, 17, 2) COCO-17 pixels, score (M, T, 17), present (M, T) bool,
        (width, height)) -> keypoint_3d (M, T, 17, 3) float32 H36M-17, zeros where a track is
        absent; every track of every clip lifted together."""
        tracks, where = [], []
        for c, (kp, sc, present, size) in enumerate(clips):
            for m in range(kp.shape[0]):
                t = np.flatnonzero(present[m])
                if len(t):
                    tracks.append((kp[m, t], sc[m, t], size))
                    where.append((c, m, t))
        out = [np.zeros((*kp.shape[:-1], 3), np.float32) for kp, _, _, _ in clips]
        for (c, m, t), y in zip(where, self.lift_tracks(tracks), strict=True):
            out[c][m, t] = y
        return out
