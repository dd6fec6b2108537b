"""Checkpoints: one ``torch.save`` dict per file, written atomically through fsspec.

Layout: {"encoder": UNIK state_dict, "heads": heads state_dict | None, "model_config": dict,
"train_config": dict, "format": 1, ...extra} (extra: optimizer, scheduler, scaler, queue,
cluster labels, RNG states, reader position, step, epoch; see ``tmor.train.pretrain``).
"""

from __future__ import annotations

import io
from typing import Any

import torch

from tmor import fsio
from tmor.model.unik import UNIK

FORMAT = 1


def save_checkpoint(url: str, encoder: UNIK, heads: torch.nn.Module | None = None,
                    train_config: dict | None = None, **extra: Any) -> None:
    """Write a checkpoint atomically (the file appears whole or not at all)."""
    from dataclasses import asdict

    state = {
        "format": FORMAT,
        "encoder": _unwrap(encoder).state_dict(),
        "heads": _unwrap(heads).state_dict() if heads is not None else None,
        "model_config": asdict(_unwrap(encoder).config),
        "train_config": dict(train_config or {}),
        **extra,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    fsio.write_bytes(url, buf.getvalue())


def load_checkpoint(url: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict (``weights_only=False``: it holds numpy RNG states; trust it)."""
    with fsio.open_url(url, "rb") as f:
        data = f.read()
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)


def load_encoder(url: str, map_location: str | torch.device = "cpu") -> UNIK:
    """Rebuild the UNIK encoder stored in a checkpoint, weights loaded, in eval mode."""
    ckpt = load_checkpoint(url, map_location)
    model = UNIK.from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["encoder"])
    return model.eval()


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """Strip DDP / torch.compile wrappers."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)
