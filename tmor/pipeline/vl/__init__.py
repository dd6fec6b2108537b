"""Video-language encoders behind one small protocol, chosen by a spec string.

Specs: ``open_clip:ARCH:PRETRAINED`` (PRETRAINED: an open_clip tag such as ``openai`` or a local
checkpoint path; ARCH: a registered open_clip name or a path to a model-config JSON) and
``viclip:PATH`` (a released ViCLIP-B/16 or ViCLIP-L/14 checkpoint). Heavy imports happen inside the
plugin modules, which this module imports lazily.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, runtime_checkable

import numpy as np

#: frames per clip and frame size of the ViCLIP protocol
NUM_FRAMES = 8
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class VideoTextEncoder(Protocol):
    """A frozen video-language model. Outputs are float32 and L2-normalized."""

    model_id: str
    sha256: str
    dim: int
    num_frames: int
    image_size: int

    def encode_video(self, frames: np.ndarray) -> np.ndarray:
        """(N, F, H, W, 3) uint8 RGB -> (N, D) float32."""
        ...

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """N strings -> (N, D) float32."""
        ...


class EncoderUnavailableError(RuntimeError):
    """The weights a spec names cannot be loaded here (missing file, offline)."""


def frame_indices(total_frames: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """The ViCLIP choice: ``num_frames`` indices at stride ``total // num_frames`` from 0.

    Raises ValueError when the clip has fewer than ``num_frames`` frames.
    """
    if total_frames < num_frames:
        raise ValueError(f"clip has {total_frames} frames, needs at least {num_frames}")
    step = total_frames // num_frames
    return [i * step for i in range(num_frames)]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(spec: str, device: str = "auto") -> VideoTextEncoder:
    """Build the encoder a spec names, e.g. ``open_clip:ViT-B-32:openai`` or ``viclip:/m/v.pth``."""
    kind, _, rest = spec.partition(":")
    if kind == "open_clip":
        arch, sep, pretrained = rest.partition(":")
        if not arch or not sep or not pretrained:
            raise ValueError(f"expected open_clip:ARCH:PRETRAINED, got {spec!r}")
        from tmor.pipeline.vl.openclip_encoder import OpenClipEncoder

        return OpenClipEncoder(arch, pretrained, device=resolve_device(device))
    if kind == "viclip":
        if not rest:
            raise ValueError(f"expected viclip:PATH, got {spec!r}")
        from tmor.pipeline.vl.viclip import ViClipEncoder

        return ViClipEncoder(rest, device=resolve_device(device))
    raise ValueError(f"unknown encoder {kind!r} in {spec!r}: use open_clip:ARCH:PRETRAINED "
                     "or viclip:PATH")


__all__ = [
    "IMAGE_SIZE",
    "NUM_FRAMES",
    "EncoderUnavailableError",
    "VideoTextEncoder",
    "frame_indices",
    "load_encoder",
    "resolve_device",
    "sha256_file",
]
