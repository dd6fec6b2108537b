"""ViCLIP (InternVid) written for tmor: a CLIP ViT whose frames share one spatio-temporal
attention, and a CLIP text transformer. Module and parameter names follow the released
ViCLIP-B/16 and ViCLIP-L/14 checkpoints (``{"model": state_dict}``), so they load as they are:

    vision_encoder.{conv1.weight, class_embedding, positional_embedding,
                    temporal_positional_embedding, ln_pre, transformer.resblocks.N, ln_post, proj}
    text_encoder.{token_embedding.weight, positional_embedding, transformer.resblocks.N,
                  ln_final, text_projection}
    temp

Each residual block: ``ln_1, attn (in_proj_weight/bias, out_proj), ln_2, mlp.c_fc, mlp.c_proj``
with QuickGELU. Sizes are read from the checkpoint's tensor shapes (heads = width / 64).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tmor.errors import PluginUnavailable
from tmor.hashing import file_sha256
from tmor.pipeline.vl import IMAGENET_MEAN, IMAGENET_STD
from tmor.pipeline.vl._torch import autocast, l2norm, video_tensor

CONTEXT_LENGTH = 32


@dataclass(frozen=True)
class ViClipConfig:
    """Shapes of a ViCLIP model. Defaults: ViCLIP-L/14."""

    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 8
    tubelet: int = 1
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    vision_out: int = 768
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_out: int = 768
    vocab_size: int = 49408
    context_length: int = CONTEXT_LENGTH

    @classmethod
    def b16(cls) -> ViClipConfig:
        return cls(patch_size=16, vision_width=768, vision_layers=12, vision_heads=12,
                   vision_out=512, text_width=512, text_layers=12, text_heads=8, text_out=512)

    @property
    def name(self) -> str:
        size = {768: "B", 1024: "L"}.get(self.vision_width, f"w{self.vision_width}")
        return f"ViT-{size}-{self.patch_size}"


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualBlock(nn.Module):
    """Pre-norm transformer block; batch-first tokens (B, L, C)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionEncoder(nn.Module):
    """Frames -> patch tokens (+ spatial and temporal position) -> one joint attention over all
    frames' tokens with a single class token -> projected class token."""

    def __init__(self, c: ViClipConfig):
        super().__init__()
        w, p = c.vision_width, c.patch_size
        self.num_frames = c.num_frames
        self.conv1 = nn.Conv3d(3, w, (c.tubelet, p, p), (c.tubelet, p, p), bias=False)
        grid = c.image_size // p
        self.class_embedding = nn.Parameter(torch.randn(w) * w**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, w) * w**-0.5)
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, c.num_frames, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, c.vision_layers, c.vision_heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, c.vision_out) * w**-0.5)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) normalized -> (B, D)."""
        x = self.conv1(video)  # (B, C, T', g, g)
        b, c, t = x.shape[:3]
        x = x.flatten(3).permute(0, 2, 3, 1)  # (B, T, g*g, C)
        x = x + self.positional_embedding[1:].to(x.dtype)
        if t == 1:
            temporal = self.temporal_positional_embedding.mean(1, keepdim=True)
        elif t == self.temporal_positional_embedding.shape[1]:
            temporal = self.temporal_positional_embedding
        else:
            raise ValueError(f"model takes {self.num_frames} frames, got {t}")
        x = x + temporal.to(x.dtype).unsqueeze(2)  # same temporal code for every patch
        x = x.transpose(1, 2).reshape(b, -1, c)  # patch-major, frame-minor tokens
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype)
        x = torch.cat([cls.expand(b, 1, c), x], dim=1)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class TextEncoder(nn.Module):
    """CLIP text transformer with a causal mask; feature at the end-of-text token."""

    def __init__(self, c: ViClipConfig):
        super().__init__()
        w = c.text_width
        self.token_embedding = nn.Embedding(c.vocab_size, w)
        self.positional_embedding = nn.Parameter(torch.randn(c.context_length, w) * 0.01)
        self.transformer = Transformer(w, c.text_layers, c.text_heads)
        self.ln_final = nn.LayerNorm(w)
        self.text_projection = nn.Parameter(torch.randn(w, c.text_out) * w**-0.5)
        mask = torch.full((c.context_length, c.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, D)."""
        n = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:n]
        x = self.transformer(x, self.attn_mask[:n, :n].to(x.dtype))
        x = self.ln_final(x)
        eot = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(-1)]
        return eot @ self.text_projection


class ViClip(nn.Module):
    def __init__(self, config: ViClipConfig):
        super().__init__()
        self.config = config
        self.vision_encoder = VisionEncoder(config)
        self.text_encoder = TextEncoder(config)
        self.temp = nn.Parameter(torch.tensor(0.01))


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
    ids = {int(m.group(1)) for k in state if (m := pat.match(k))}
    return max(ids) + 1 if ids else 0


_SHAPE_KEYS = (
    "vision_encoder.conv1.weight", "vision_encoder.positional_embedding",
    "vision_encoder.temporal_positional_embedding", "vision_encoder.proj",
    "text_encoder.token_embedding.weight", "text_encoder.positional_embedding",
    "text_encoder.text_projection",
)


def config_from_state_dict(state: dict[str, torch.Tensor]) -> ViClipConfig:
    """Read the model's sizes off a released-layout state dict (ValueError when not one)."""
    missing = [k for k in _SHAPE_KEYS if k not in state]
    if missing:
        raise ValueError(f"not a ViCLIP state dict: missing {missing}")
    conv = state["vision_encoder.conv1.weight"]
    pos = state["vision_encoder.positional_embedding"]
    vw, patch = conv.shape[0], conv.shape[-1]
    tw = state["text_encoder.token_embedding.weight"].shape[1]
    return ViClipConfig(
        image_size=round((pos.shape[0] - 1) ** 0.5) * patch,
        patch_size=patch,
        num_frames=state["vision_encoder.temporal_positional_embedding"].shape[1],
        tubelet=conv.shape[2],
        vision_width=vw,
        vision_layers=_count_blocks(state, "vision_encoder."),
        vision_heads=max(1, vw // 64),
        vision_out=state["vision_encoder.proj"].shape[1],
        text_width=tw,
        text_layers=_count_blocks(state, "text_encoder."),
        text_heads=max(1, tw // 64),
        text_out=state["text_encoder.text_projection"].shape[1],
        vocab_size=state["text_encoder.token_embedding.weight"].shape[0],
        context_length=state["text_encoder.positional_embedding"].shape[0],
    )


def load_viclip(path: str | Path) -> ViClip:
    """A ViCLIP model from a released checkpoint (``{"model": sd}`` or a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        raise PluginUnavailable(
            f"ViCLIP checkpoint not found: {path}. Download ViClip-InternVid-10M-FLT.pth "
            "(ViCLIP-L/14) or ViCLIP-B_InternVid-FLT-10M.pth from huggingface.co/OpenGVLab "
            "and pass viclip:/path/to/it")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model = ViClip(config_from_state_dict(state))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: not a ViCLIP checkpoint, missing {sorted(missing)[:5]}")
    return model


class ViClipEncoder:
    """``viclip:PATH``: ViCLIP's video and text towers; ImageNet mean/std, 224x224, 8 frames."""

    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    @classmethod
    def from_spec(cls, rest: str, device: str = "cpu") -> ViClipEncoder:
        """``PATH`` (the spec after ``viclip:``)."""
        if not rest:
            raise ValueError("expected viclip:PATH, got 'viclip:'")
        return cls(rest, device=device)

    def __init__(self, path: str, device: str = "cpu"):
        from open_clip.tokenizer import SimpleTokenizer

        model = load_viclip(path)
        c = model.config
        self.device = device
        self.model = model.to(device).eval()
        self.num_frames = c.num_frames
        self.image_size = c.image_size
        self.dim = c.vision_out
        self.tokenizer = SimpleTokenizer(context_length=c.context_length)
        self.model_id = f"viclip:{c.name}:{Path(path).name}"
        self.sha256 = file_sha256(path)

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> np.ndarray:
        x = video_tensor(frames, self.device, self.image_size, self.mean, self.std)
        with autocast(self.device):
            feats = self.model.vision_encoder(x.permute(0, 2, 1, 3, 4))  # (B, 3, T, H, W)
        return l2norm(feats).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with autocast(self.device):
            feats = self.model.text_encoder(tokens)
        return l2norm(feats).cpu().numpy().astype(np.float32)
