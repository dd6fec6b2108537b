"""Tensor helpers shared by the encoder plugins (imports torch: load lazily)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def video_tensor(frames: np.ndarray, device: str, size: int, mean: Sequence[float],
                 std: Sequence[float]) -> torch.Tensor:
    """(N, F, H, W, 3) uint8 -> (N, F, 3, size, size) float32 on ``device``, normalized.

    Frames are moved as uint8 and resized there (bilinear, antialiased, no crop).
    """
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (N, F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    n, f, h, w, _ = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device, non_blocking=True)
    x = x.view(n * f, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.view(n, f, 3, size, size)


def autocast(device: str) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA, nothing elsewhere."""
    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and bytes of a state dict (for weights without a local file)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
