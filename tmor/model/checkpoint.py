"""Checkpoints: one ``torch.save`` dict per file, written atomically through fsspec, read back
with ``torch.load(weights_only=True)``.

Layout: {"encoder": UNIK state_dict, "heads": heads state_dict | None, "model_config": dict,
"train_config": dict, "format": 1, ...extra} (extra: optimizer, scheduler, scaler, queue,
cluster labels, RNG states, reader position, step, epoch, corpus index hash; see
``tmor.train.pretrain``).

Loading never runs code from the file: the unpickler accepts tensors, containers and plain
Python values, plus the globals in :data:`ALLOWED_GLOBALS` (numpy arrays and scalars, which
checkpoints written before the safe format held in their RNG states). Numpy values are turned
into tensors / Python values on save (:func:`to_safe`), so new files need no allowed global.
A file that asks for anything else is refused with :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import torch

from tmor import fsio
from tmor.model.unik import UNIK

FORMAT = 1


class UnsafeCheckpointError(ValueError):
    """A checkpoint that would need code outside the allowed globals to load."""


def _numpy_globals() -> list[Any]:
    """What the unpickler needs for numpy arrays / scalars (no callable that runs code)."""
    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
    dtypes = {type(np.dtype(t)) for t in (np.uint32, np.int64, np.float32, np.float64, np.bool_)}
    return [ma._reconstruct, ma.scalar, np.ndarray, np.dtype, *sorted(dtypes, key=str)]


#: the only globals a checkpoint may reference besides torch's own weights-only set
ALLOWED_GLOBALS: list[Any] = _numpy_globals()


def to_safe(value: Any) -> Any:
    """numpy arrays -> tensors, numpy scalars -> Python values, recursively through containers
    (tuples stay tuples), so the file loads with ``weights_only=True`` and no allowed global."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        out = [to_safe(v) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    return value


def save_checkpoint(url: str, encoder: UNIK, heads: torch.nn.Module | None = None,
                    train_config: dict | None = None, **extra: Any) -> None:
    """Write a checkpoint atomically (the file appears whole or not at all)."""
    from dataclasses import asdict

    state = {
        "format": FORMAT,
        "encoder": _unwrap(encoder).state_dict(),
        "heads": _unwrap(heads).state_dict() if heads is not None else None,
        "model_config": asdict(_unwrap(encoder).config),
        "train_config": to_safe(dict(train_config or {})),
        **to_safe(extra),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    fsio.write_bytes(url, buf.getvalue())


def load_checkpoint(url: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict with ``weights_only=True`` and :data:`ALLOWED_GLOBALS`; raises
    :class:`UnsafeCheckpointError` (nothing executed) for a file that needs any other global."""
    with fsio.open_url(url, "rb") as f:
        data = f.read()
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpointError(
            f"{url}: refused to load, the file needs code outside the allowed globals "
            f"(tmor.model.checkpoint.ALLOWED_GLOBALS); only load checkpoints you trust with "
            f"torch.load directly. Unpickler: {first}") from None


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
