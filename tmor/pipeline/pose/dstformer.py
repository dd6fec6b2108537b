"""DSTformer, the network of MotionBERT's released checkpoints (Zhu et al., ICCV 2023).

Written from the paper and the released code's behaviour, with the released parameter names and
shapes, so that a checkpoint's ``model_pos`` state dict loads strictly (:func:`load_dstformer`).

Input (B, F, J, 3): per frame and joint x, y, confidence; output (B, F, J, 3). Each joint of
each frame is a token of ``dim_feat`` features (a linear embedding plus a learned joint and a
learned frame embedding). ``depth`` pairs of blocks follow; in each pair one block attends over
the joints of a frame, then over the frames of a joint ("st"), the other in the opposite order
("ts"), each attention followed by its own MLP, all pre-LayerNorm residual. A learned linear
map of both streams' concatenated features gives two softmax weights per token that mix the
streams. A final LayerNorm, ``tanh(Linear(dim_feat, dim_rep))`` and ``Linear(dim_rep, 3)``.

Padding: ``forward(x, mask)`` with ``mask`` (B, F) True on real frames: temporal attention
never attends to padded frames, and nothing else mixes frames, so the outputs of the real
frames equal those of a call on the real frames alone.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: the two released sizes, (dim_feat, mlp_ratio) -> name
VARIANTS = {(256, 4): "lite", (512, 2): "base"}


@dataclass(frozen=True)
class DSTformerConfig:
    dim_in: int = 3
    dim_out: int = 3
    dim_feat: int = 256
    dim_rep: int = 512
    depth: int = 5
    num_heads: int = 8
    mlp_ratio: int = 4
    num_joints: int = 17
    maxlen: int = 243

    @property
    def variant(self) -> str:
        return VARIANTS.get((self.dim_feat, self.mlp_ratio), "?")


class Attention(nn.Module):
    """Multi-head self-attention over the joints of a frame or the frames of a joint."""

    def __init__(self, dim: int, num_heads: int, over: str):
        super().__init__()
        self.num_heads, self.over = num_heads, over
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, mask: torch.Tensor | None) -> torch.Tensor:
        bf, j, c = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).reshape(bf, j, 3, h, c // h).permute(2, 0, 3, 1, 4)  # (BF,H,J,c)
        if self.over == "joints":
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (BF, J, H, c)
        else:
            b = bf // frames

            def by_joint(t: torch.Tensor) -> torch.Tensor:  # (BF,H,J,c) -> (B, H*J, F, c)
                return t.reshape(b, frames, h, j, c // h).permute(0, 2, 3, 1, 4).reshape(
                    b, h * j, frames, c // h)

            keys = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, F)
            y = F.scaled_dot_product_attention(by_joint(q), by_joint(k), by_joint(v),
                                               attn_mask=keys)
            y = y.reshape(b, h, j, frames, c // h).permute(0, 3, 2, 1, 4)  # (B, F, J, H, c)
        return self.proj(y.reshape(bf, j, c))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Spatial and temporal attention, each with its MLP, in the order ``st`` or ``ts``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, order: str):
        super().__init__()
        self.order = order
        self.norm1_s, self.norm1_t = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.norm2_s, self.norm2_t = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn_s = Attention(dim, num_heads, "joints")
        self.attn_t = Attention(dim, num_heads, "frames")
        self.mlp_s = MLP(dim, dim * mlp_ratio)
        self.mlp_t = MLP(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, frames: int, mask: torch.Tensor | None) -> torch.Tensor:
        for part in self.order:
            attn, mlp = (self.attn_s, self.mlp_s) if part == "s" else (self.attn_t, self.mlp_t)
            norm1, norm2 = ((self.norm1_s, self.norm2_s) if part == "s"
                            else (self.norm1_t, self.norm2_t))
            x = x + attn(norm1(x), frames, mask)
            x = x + mlp(norm2(x))
        return x


class DSTformer(nn.Module):
    """The dual-stream spatio-temporal transformer (see the module doc)."""

    def __init__(self, config: DSTformerConfig = DSTformerConfig()):
        super().__init__()
        c = self.config = config
        d = c.dim_feat
        self.joints_embed = nn.Linear(c.dim_in, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_joints, d))
        self.temp_embed = nn.Parameter(torch.zeros(1, c.maxlen, 1, d))
        self.blocks_st = nn.ModuleList(
            Block(d, c.num_heads, c.mlp_ratio, "st") for _ in range(c.depth))
        self.blocks_ts = nn.ModuleList(
            Block(d, c.num_heads, c.mlp_ratio, "ts") for _ in range(c.depth))
        self.ts_attn = nn.ModuleList(nn.Linear(2 * d, 2) for _ in range(c.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.pre_logits = nn.Sequential(OrderedDict(fc=nn.Linear(d, c.dim_rep), act=nn.Tanh()))
        self.head = nn.Linear(c.dim_rep, c.dim_out)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random weights as MotionBERT initialises them (truncated normal, std 0.02)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.temp_embed, std=0.02)
        for fuse in self.ts_attn:  # both streams weighted equally at the start
            nn.init.zeros_(fuse.weight)
            nn.init.constant_(fuse.bias, 0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, J, dim_in) -> (B, F, J, dim_out); ``mask`` (B, F) bool, True on real frames."""
        b, f, j, _ = x.shape
        if f > self.config.maxlen:
            raise ValueError(f"{f} frames, more than the network's {self.config.maxlen}")
        x = self.joints_embed(x) + self.pos_embed
        x = (x + self.temp_embed[:, :f]).reshape(b * f, j, -1)
        for st, ts, fuse in zip(self.blocks_st, self.blocks_ts, self.ts_attn, strict=True):
            a, c = st(x, f, mask), ts(x, f, mask)
            w = fuse(torch.cat([a, c], dim=-1)).softmax(dim=-1)
            x = a * w[..., 0:1] + c * w[..., 1:2]
        x = self.norm(x).reshape(b, f, j, -1)
        return self.head(self.pre_logits(x))


def config_from_state_dict(state: dict[str, torch.Tensor]) -> DSTformerConfig:
    """The architecture a state dict was saved from, read from its shapes; ValueError unless
    it is one of the released sizes (:data:`VARIANTS`, depth 5, dim_rep 512, 17 joints)."""
    try:
        dim_feat, dim_in = state["joints_embed.weight"].shape
        hidden = state["blocks_st.0.mlp_s.fc1.weight"].shape[0]
        dim_rep = state["pre_logits.fc.weight"].shape[0]
        dim_out = state["head.weight"].shape[0]
        maxlen = state["temp_embed"].shape[1]
        joints = state["pos_embed"].shape[1]
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"not a DSTformer state dict (no {e})") from None
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks_st.")})
    cfg = DSTformerConfig(dim_in=dim_in, dim_out=dim_out, dim_feat=dim_feat, dim_rep=dim_rep,
                          depth=depth, mlp_ratio=hidden // dim_feat, num_joints=joints,
                          maxlen=maxlen)
    released = (dim_in, dim_out, dim_rep, depth, joints, maxlen) == (3, 3, 512, 5, 17, 243)
    if hidden % dim_feat or cfg.variant == "?" or not released:
        raise ValueError(
            f"shapes match neither released DSTformer (lite: dim_feat 256, mlp_ratio 4; base: "
            f"512, 2; both depth 5, dim_rep 512, 17 joints, maxlen 243): dim_feat {dim_feat}, "
            f"mlp hidden {hidden}, depth {depth}, dim_rep {dim_rep}, joints {joints}, "
            f"maxlen {maxlen}, dim_in {dim_in}, dim_out {dim_out}")
    return cfg


def load_dstformer(state: dict[str, torch.Tensor]) -> DSTformer:
    """A DSTformer with ``state`` loaded strictly (keys may carry DataParallel's ``module.``
    prefix), in eval mode; ValueError naming the keys that do not fit."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = DSTformer(config_from_state_dict(state))
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise ValueError(" ".join(str(e).split())[:400]) from None
    if missing or unexpected:
        raise ValueError(f"keys do not fit a DSTformer: missing {sorted(missing)[:4]}, "
                         f"unexpected {sorted(unexpected)[:4]}")
    return net.eval()
