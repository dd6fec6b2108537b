"""Which torch device a model runs on."""

from __future__ import annotations


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda:0`` when torch sees a GPU, else ``cpu``; any other name unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"
