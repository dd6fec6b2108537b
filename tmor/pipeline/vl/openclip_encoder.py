"""open_clip image-text models as video-text encoders: per-frame image features, mean-pooled."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tmor.errors import PluginUnavailable
from tmor.hashing import file_sha256
from tmor.pipeline.vl import IMAGE_SIZE, NUM_FRAMES
from tmor.pipeline.vl._torch import autocast, l2norm, state_dict_sha256, video_tensor

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
#: open_clip model names that carry their own weights (open_clip ignores ``pretrained`` for them)
SCHEMAS = ("hf-hub:", "local-dir:")


def parse_spec(rest: str) -> tuple[str, str | None]:
    """The spec after ``open_clip:`` -> (model name, pretrained). ``hf-hub:org/repo`` and
    ``local-dir:/path`` are whole names (weights included: pretrained None); anything else is
    ``ARCH:PRETRAINED`` (a registered name or a model-config JSON, and a tag or checkpoint)."""
    if rest.startswith(SCHEMAS):
        schema, _, ident = rest.partition(":")
        if not ident:
            raise ValueError(f"expected open_clip:{schema}:IDENTIFIER, got open_clip:{rest!r}")
        return rest, None
    arch, sep, pretrained = rest.partition(":")
    if not arch or not sep or not pretrained:
        raise ValueError(f"expected open_clip:ARCH:PRETRAINED or open_clip:hf-hub:ORG/REPO, "
                         f"got open_clip:{rest!r}")
    return arch, pretrained


def _looks_like_path(s: str) -> bool:
    return os.sep in s or s.endswith(_CHECKPOINT_SUFFIXES) or s.startswith(".")


def _register_arch(arch: str) -> str:
    """An open_clip model name; a path to a JSON model config is registered under its stem."""
    import open_clip

    if arch.startswith(SCHEMAS):
        return arch
    if arch.endswith(".json"):
        p = Path(arch)
        if not p.is_file():
            raise PluginUnavailable(f"open_clip model config not found: {arch}")
        open_clip.add_model_config(p)
        return p.stem
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())")
    return arch


class OpenClipEncoder:
    """``open_clip:ARCH:PRETRAINED`` or ``open_clip:hf-hub:ORG/REPO`` (``local-dir:PATH``): the
    image tower over each of the sampled frames, features L2-normalized per frame, mean-pooled
    over frames and re-normalized; the text tower for text."""

    num_frames = NUM_FRAMES

    @classmethod
    def from_spec(cls, rest: str, device: str = "cpu") -> OpenClipEncoder:
        """The spec after ``open_clip:`` (see :func:`parse_spec`)."""
        arch, pretrained = parse_spec(rest)
        return cls(arch, pretrained, device=device)

    def __init__(self, arch: str, pretrained: str | None, device: str = "cpu"):
        import open_clip

        name = _register_arch(arch)
        local = pretrained is not None and Path(pretrained).is_file()
        if pretrained is None:
            pass  # a schema name: open_clip finds the weights (hub or folder)
        elif not local and _looks_like_path(pretrained):
            raise PluginUnavailable(
                f"checkpoint file not found: {pretrained} (provide the open_clip checkpoint "
                f"for {name} at that path)")
        elif not local and pretrained not in open_clip.list_pretrained_tags_by_model(name):
            raise PluginUnavailable(
                f"{pretrained!r} is neither a file nor an open_clip pretrained tag of {name}")
        try:
            model = open_clip.create_model(name, pretrained=pretrained, device="cpu")
        except Exception as e:  # network errors, HF hub offline, corrupt files
            raise PluginUnavailable(
                f"cannot load open_clip {name}{'' if pretrained is None else ':' + pretrained} "
                f"({type(e).__name__}: {e}). Offline, "
                f"download the weights elsewhere and pass open_clip:ARCH:/path/to/checkpoint "
                f"or open_clip:local-dir:/path/to/folder"
            ) from e
        self.device = device
        self.model = model.to(device).eval()
        pre = open_clip.get_model_preprocess_cfg(model)
        size = pre.get("size", IMAGE_SIZE)
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.mean = tuple(pre.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(pre.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.tokenizer = open_clip.get_tokenizer(name)
        if pretrained is None:
            self.model_id = f"open_clip:{name}"
        else:
            tag = Path(pretrained).name if local else pretrained
            self.model_id = f"open_clip:{name}:{tag}"
        self.sha256 = file_sha256(pretrained) if local else state_dict_sha256(model.state_dict())
        with torch.no_grad():
            self.dim = int(self.encode_text(["a"]).shape[1])

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> np.ndarray:
        x = video_tensor(frames, self.device, self.image_size, self.mean, self.std)
        n, f = x.shape[:2]
        with autocast(self.device):
            feats = self.model.encode_image(x.flatten(0, 1))
        feats = l2norm(feats).view(n, f, -1).mean(1)
        return l2norm(feats).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with autocast(self.device):
            feats = self.model.encode_text(tokens)
        return l2norm(feats).cpu().numpy().astype(np.float32)
