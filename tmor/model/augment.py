"""Augmented motion views: random temporal crop (resized back to T) and a random rotation (3D)
or shear (2D) of the coordinates. Batched on (N, C, T, V, M) tensors, driven by a Generator."""

from __future__ import annotations

import math

import torch


def temporal_crop(x: torch.Tensor, gen: torch.Generator, min_ratio: float = 0.5) -> torch.Tensor:
    """Crop a random window of ratio in [min_ratio, 1] of T per sample; resample to T frames."""
    n, c, t, v, m = x.shape
    ratio = min_ratio + (1 - min_ratio) * torch.rand(n, generator=gen, device=gen.device)
    length = (ratio * t).clamp(min=1).to(x.device)
    start = (torch.rand(n, generator=gen, device=gen.device).to(x.device) * (t - length))
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


def _rotation(n: int, gen: torch.Generator, max_deg: float) -> torch.Tensor:
    a = (torch.rand(n, 3, generator=gen, device=gen.device) * 2 - 1) * math.radians(max_deg)
    cx, cy, cz = a.cos().unbind(1)
    sx, sy, sz = a.sin().unbind(1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(n, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(n, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(n, 3, 3)
    return rz @ ry @ rx


def _shear(n: int, gen: torch.Generator, max_shear: float) -> torch.Tensor:
    s = (torch.rand(n, 2, generator=gen, device=gen.device) * 2 - 1) * max_shear
    one = torch.ones(n, device=gen.device)
    return torch.stack([one, s[:, 0], s[:, 1], one], 1).view(n, 2, 2)


def spatial_transform(x: torch.Tensor, gen: torch.Generator, max_deg: float = 30.0,
                      max_shear: float = 0.3) -> torch.Tensor:
    """Rotate 3D coordinates by random Euler angles, or shear 2D ones, per sample.

    With C > 3 (e.g. x, y, score) only the first 2 channels are transformed.
    """
    n, c = x.shape[:2]
    k = 3 if c == 3 else 2
    mat = _rotation(n, gen, max_deg) if k == 3 else _shear(n, gen, max_shear)
    mat = mat.to(x)
    xyz = torch.einsum("nij,njtvm->nitvm", mat, x[:, :k])
    return torch.cat([xyz, x[:, k:]], 1) if c > k else xyz


def augment(x: torch.Tensor, gen: torch.Generator, min_crop: float = 0.5,
            max_deg: float = 30.0, max_shear: float = 0.3) -> torch.Tensor:
    """Temporal crop then rotation / shear: one random augmented view of a batch."""
    return spatial_transform(temporal_crop(x, gen, min_crop), gen, max_deg, max_shear)
