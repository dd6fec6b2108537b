"""Which torch device a model runs on, and which GPU each local worker gets."""

from __future__ import annotations

from typing import Any


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda:0`` when torch sees a GPU, else ``cpu``; ``cuda`` -> ``cuda:0``; any
    other name unchanged."""
    if device == "cuda":
        return "cuda:0"
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def gpu_count() -> int:
    """How many CUDA devices torch sees here (0 without torch or without CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_device(device: str, index: int, gpus: int) -> str:
    """The device of local worker ``index`` on a machine with ``gpus`` GPUs: ``auto`` or ``cuda``
    -> ``cuda:(index mod gpus)`` (``cpu`` when there is none for ``auto``); ``cuda:K``, ``cpu``
    and any other explicit name pin every worker to it."""
    if device not in ("auto", "cuda"):
        return device
    if gpus <= 0:
        return "cpu" if device == "auto" else "cuda:0"
    return f"cuda:{index % gpus}"


def stage_device(stage: Any) -> str | None:
    """The ``device`` field of a stage's config, or None for stages that run no model."""
    device = getattr(getattr(stage, "config", None), "device", None)
    return device if isinstance(device, str) else None


def worker_devices(stage: Any, workers: int) -> list[str | None]:
    """One device per local worker (None: leave the stage's config as it is)."""
    device = stage_device(stage)
    if device is None or device not in ("auto", "cuda"):
        return [None] * workers
    gpus = gpu_count()
    return [worker_device(device, i, gpus) for i in range(workers)]


def pin_stage_device(stage: Any, device: str | None) -> None:
    """Set the stage's config device (in the worker process, before the stage loads a model)."""
    if device is not None and stage_device(stage) is not None:
        stage.config.device = device
