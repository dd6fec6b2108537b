"""Video-language encoders behind one small protocol, chosen by a spec string.

Specs: ``open_clip:ARCH:PRETRAINED`` (PRETRAINED: an open_clip tag such as ``openai`` or a local
checkpoint path; ARCH: a registered open_clip name or a path to a model-config JSON),
``open_clip:hf-hub:ORG/REPO`` and ``open_clip:local-dir:PATH`` (open_clip's own names that carry
their weights), and
``viclip:PATH`` (a released ViCLIP-B/16 or ViCLIP-L/14 checkpoint). Heavy imports happen inside the
plugin modules, which this module imports lazily.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from tmor.devices import resolve_device
from tmor.plugins import Registry

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


def frame_indices(total_frames: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """The ViCLIP choice: ``num_frames`` indices at stride ``total // num_frames`` from 0.

    Raises ValueError when the clip has fewer than ``num_frames`` frames.
    """
    if total_frames < num_frames:
        raise ValueError(f"clip has {total_frames} frames, needs at least {num_frames}")
    step = total_frames // num_frames
    return [i * step for i in range(num_frames)]


#: encoder kind (the spec's first field) -> class with ``from_spec(rest, device)``
ENCODERS = Registry("video-language encoder", {
    "open_clip": "tmor.pipeline.vl.openclip_encoder:OpenClipEncoder",
    "viclip": "tmor.pipeline.vl.viclip:ViClipEncoder",
})


ENCODER_SPECS = "open_clip:ARCH:PRETRAINED, open_clip:hf-hub:ORG/REPO or viclip:PATH"


def encoder_spec(spec: str) -> str | None:
    """Config rule: a spec whose kind (its first field) is a registered encoder."""
    return None if spec.partition(":")[0] in ENCODERS else f"must be {ENCODER_SPECS}"


def load_encoder(spec: str, device: str = "auto") -> VideoTextEncoder:
    """Build the encoder a spec names, e.g. ``open_clip:ViT-B-32:openai`` or ``viclip:/m/v.pth``;
    raises :class:`~tmor.errors.PluginUnavailable` when it cannot start here."""
    kind, _, rest = spec.partition(":")
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder {kind!r} in {spec!r}: use {ENCODER_SPECS}")
    return ENCODERS.get(kind).from_spec(rest, device=resolve_device(device))


__all__ = [
    "IMAGE_SIZE",
    "NUM_FRAMES",
    "VideoTextEncoder",
    "frame_indices",
    "ENCODERS",
    "encoder_spec",
    "load_encoder",
]
