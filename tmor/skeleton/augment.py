"""Skeleton augmentation, in one place for the trainer and the reader's transforms.

- :func:`augment`: the pre-training's augmented motion view: random temporal crop (resized back
  to T) and a random rotation (3D) or shear (2D) of the coordinates. Batched on (N, C, T, V, M)
  tensors of any device, driven by a CPU Generator.
- :func:`rotate_np`: the transfer reader's per-sample rotation (numpy, +-15 degrees).

Under DDP every rank draws the parameters of the whole global batch (``total``) from the same
generator and keeps its own rows (``offset``), so the views do not depend on the number of ranks.
Torch is imported inside the batched functions, so numpy users need no torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def _draw(gen: torch.Generator, n: int, total: int | None, offset: int, *shape: int
          ) -> torch.Tensor:
    import torch

    total = n if total is None else total
    return torch.rand(total, *shape, generator=gen)[offset:offset + n]


def temporal_crop(x: torch.Tensor, gen: torch.Generator, min_ratio: float = 0.5,
                  total: int | None = None, offset: int = 0) -> torch.Tensor:
    """Crop a random window of ratio in [min_ratio, 1] of T per sample; resample to T frames."""
    import torch

    n, c, t, v, m = x.shape
    ratio = min_ratio + (1 - min_ratio) * _draw(gen, n, total, offset)
    # host-drawn parameters go to the device without waiting for it (non_blocking)
    length = (ratio * t).clamp(min=1).to(x.device, non_blocking=True)
    start = _draw(gen, n, total, offset).to(x.device, non_blocking=True) * (t - length)
    # fractional source frame for every output frame, linear interpolation between neighbours
    pos = start[:, None] + length[:, None] * (torch.arange(t, device=x.device) + 0.5)[None] / t
    pos = (pos - 0.5).clamp(0, t - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=t - 1)
    w = (pos - lo.to(pos.dtype)).to(x.dtype)
    idx_lo = lo[:, None, :, None, None].expand(n, c, t, v, m)
    idx_hi = hi[:, None, :, None, None].expand(n, c, t, v, m)
    w = w[:, None, :, None, None]
    return x.gather(2, idx_lo) * (1 - w) + x.gather(2, idx_hi) * w


def _rotation(a: torch.Tensor, max_deg: float) -> torch.Tensor:
    import torch

    n = a.shape[0]
    a = (a * 2 - 1) * math.radians(max_deg)
    cx, cy, cz = a.cos().unbind(1)
    sx, sy, sz = a.sin().unbind(1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(n, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(n, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(n, 3, 3)
    return rz @ ry @ rx


def _shear(s: torch.Tensor, max_shear: float) -> torch.Tensor:
    import torch

    n = s.shape[0]
    s = (s * 2 - 1) * max_shear
    one = torch.ones(n)
    return torch.stack([one, s[:, 0], s[:, 1], one], 1).view(n, 2, 2)


def spatial_transform(x: torch.Tensor, gen: torch.Generator, max_deg: float = 30.0,
                      max_shear: float = 0.3, total: int | None = None, offset: int = 0
                      ) -> torch.Tensor:
    """Rotate 3D coordinates by random Euler angles, or shear 2D ones, per sample.

    With C > 3 (e.g. x, y, score) only the first 2 channels are transformed.
    """
    import torch

    n, c = x.shape[:2]
    k = 3 if c == 3 else 2
    r = _draw(gen, n, total, offset, k if k == 3 else 2)
    mat = _rotation(r, max_deg) if k == 3 else _shear(r, max_shear)
    mat = mat.to(x.device, x.dtype, non_blocking=True)
    xyz = torch.einsum("nij,njtvm->nitvm", mat, x[:, :k])
    return torch.cat([xyz, x[:, k:]], 1) if c > k else xyz


def augment(x: torch.Tensor, gen: torch.Generator, min_crop: float = 0.5,
            max_deg: float = 30.0, max_shear: float = 0.3, total: int | None = None,
            offset: int = 0) -> torch.Tensor:
    """Temporal crop then rotation / shear: one random augmented view of a batch (rows
    ``offset:offset + N`` of a global batch of ``total`` when given)."""
    y = temporal_crop(x, gen, min_crop, total, offset)
    return spatial_transform(y, gen, max_deg, max_shear, total, offset)


def rotate_np(coords: np.ndarray, dims: int, rng: np.random.Generator, max_deg: float = 15.0
              ) -> None:
    """In-place random rotation of the first ``dims`` channels (about z in 2D, y and x in 3D)."""
    a = np.deg2rad(rng.uniform(-max_deg, max_deg, size=2))
    c, s = np.cos(a), np.sin(a)
    if dims == 2:
        r = np.array([[c[0], -s[0]], [s[0], c[0]]], np.float32)
    else:
        ry = np.array([[c[0], 0, s[0]], [0, 1, 0], [-s[0], 0, c[0]]], np.float32)
        rx = np.array([[1, 0, 0], [0, c[1], -s[1]], [0, s[1], c[1]]], np.float32)
        r = (ry @ rx).astype(np.float32)
    coords[..., :dims] = coords[..., :dims] @ r.T
