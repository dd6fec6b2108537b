"""The UNIK skeleton encoder (Yang et al., "UNIK: A Unified Framework for Real-world
Skeleton-based Action Recognition", BMVC 2021), written from the paper and its public code.

Input (N, C, T, V, M): C coordinates (2 or 3), T frames, V joints, M persons.
A data BatchNorm over M*V*C, persons folded into the batch, 10 spatio-temporal blocks
(64 x4, 128 with temporal stride 2, 128 x2, 256 with stride 2, 256 x2). Each block: a spatial
unit of ``num_heads`` attention heads softmax(theta . phi / (C_e * T)) plus a learned V x V
dependency matrix per head, a 9x1 temporal convolution, and residuals. The embedding is the mean
over T' and V, then over persons: (N, 256).

The reference's spatial unit also declares a (V,) ``bias`` parameter that its forward never uses;
it is left out here, so the parameter count is 3,443,494 (2D, V=17, M=2) rather than 3,443,664.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

#: (in, out, temporal stride) of blocks 2..10; block 1 maps in_channels -> 64.
BLOCKS: tuple[tuple[int, int, int], ...] = (
    (64, 64, 1), (64, 64, 1), (64, 64, 1),
    (64, 128, 2), (128, 128, 1), (128, 128, 1),
    (128, 256, 2), (256, 256, 1), (256, 256, 1),
)


@dataclass
class UNIKConfig:
    """Constructor arguments of :class:`UNIK`, stored in checkpoints as ``model_config``."""

    in_channels: int = 2
    num_joints: int = 17
    num_persons: int = 2
    num_heads: int = 3
    coff_embedding: int = 4
    temporal_kernel: int = 9
    base_channels: int = 64


def _conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _bn_init(bn: nn.modules.batchnorm._BatchNorm, scale: float) -> None:
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)


class TemporalUnit(nn.Module):
    """k x 1 convolution over time (optionally strided) followed by BatchNorm."""

    def __init__(self, cin: int, cout: int, kernel: int = 9, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, (kernel, 1), padding=((kernel - 1) // 2, 0),
                              stride=(stride, 1))
        self.bn = nn.BatchNorm2d(cout)
        _conv_init(self.conv)
        _bn_init(self.bn, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SpatialUnit(nn.Module):
    """Multi-head self-attention over joints plus a learned dependency matrix per head."""

    def __init__(self, cin: int, cout: int, num_joints: int, num_heads: int = 3,
                 coff_embedding: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.inter = cout // coff_embedding
        self.dep = nn.Parameter(torch.empty(num_heads, num_joints, num_joints))
        nn.init.kaiming_uniform_(self.dep, a=math.sqrt(5))
        self.theta = nn.ModuleList(nn.Conv2d(cin, self.inter, 1) for _ in range(num_heads))
        self.phi = nn.ModuleList(nn.Conv2d(cin, self.inter, 1) for _ in range(num_heads))
        self.out = nn.ModuleList(nn.Conv2d(cin, cout, 1) for _ in range(num_heads))
        self.down: nn.Module
        if cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
        else:
            self.down = nn.Identity()
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                _bn_init(m, 1.0)
        _bn_init(self.bn, 1e-6)
        for conv in self.out:  # branch init: variance split over the heads
            n, k1, k2 = conv.weight.shape[0], conv.weight.shape[1], conv.weight.shape[2]
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (n * k1 * k2 * num_heads)))
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape
        y = None
        # theta . phi / (C_e T), with both factors scaled by (C_e T)^-1/2 before the product:
        # the sum of C_e T products then cannot pass fp16's 65,504 under autocast
        scale = (self.inter * t) ** -0.5
        for h in range(self.num_heads):
            q = self.theta[h](x).reshape(n, self.inter * t, v) * scale
            k = self.phi[h](x).reshape(n, self.inter * t, v) * scale
            att = torch.softmax(q.transpose(1, 2) @ k, dim=-2)  # (n, v, v)
            a = att + self.dep[h]
            z = self.out[h]((x.reshape(n, c * t, v) @ a).reshape(n, c, t, v))
            y = z if y is None else y + z
        assert y is not None
        return self.relu(self.bn(y) + self.down(x))


class STBlock(nn.Module):
    """Spatial unit, then temporal unit, plus a (projected, strided) residual; ReLU."""

    def __init__(self, cin: int, cout: int, num_joints: int, num_heads: int = 3,
                 stride: int = 1, residual: bool = True, coff_embedding: int = 4,
                 temporal_kernel: int = 9) -> None:
        super().__init__()
        self.s_unit = SpatialUnit(cin, cout, num_joints, num_heads, coff_embedding)
        self.t_unit = TemporalUnit(cout, cout, temporal_kernel, stride)
        self.residual: nn.Module | None
        if not residual:
            self.residual = None
        elif cin == cout and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = TemporalUnit(cin, cout, kernel=1, stride=stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.t_unit(self.s_unit(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class UNIK(nn.Module):
    """UNIK backbone: (N, C, T, V, M) -> (N, 256) embedding (``embed_dim``: 4 x base_channels).

    ``forward_features`` returns the temporal feature map before pooling, (N, 256, T', V)
    averaged over persons, with T' = ceil(ceil(T / 2) / 2) (two stride-2 blocks); use
    ``.mean(-1)`` for a (N, 256, T') frame-wise map.
    """

    embed_dim = 256
    temporal_stride = 4

    def __init__(self, in_channels: int = 2, num_joints: int = 17, num_persons: int = 2,
                 num_heads: int = 3, coff_embedding: int = 4, temporal_kernel: int = 9,
                 base_channels: int = 64) -> None:
        super().__init__()
        self.config = UNIKConfig(in_channels, num_joints, num_persons, num_heads,
                                 coff_embedding, temporal_kernel, base_channels)
        w = base_channels / 64  # width multiplier: 64 is the reference (tests use smaller)
        blocks = [(int(a * w), int(b * w), s) for a, b, s in BLOCKS]
        self.embed_dim = blocks[-1][1]
        self.data_bn = nn.BatchNorm1d(num_persons * num_joints * in_channels)
        _bn_init(self.data_bn, 1.0)
        kw = dict(num_joints=num_joints, num_heads=num_heads, coff_embedding=coff_embedding,
                  temporal_kernel=temporal_kernel)
        layers = [STBlock(in_channels, blocks[0][0], residual=False, **kw)]
        layers += [STBlock(cin, cout, stride=s, **kw) for cin, cout, s in blocks]
        self.layers = nn.ModuleList(layers)

    @classmethod
    def from_config(cls, cfg: UNIKConfig | dict) -> UNIK:
        """Build from a :class:`UNIKConfig` or its dict form."""
        d = asdict(cfg) if isinstance(cfg, UNIKConfig) else dict(cfg)
        return cls(**d)

    def _per_person(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v, m = x.shape
        if (c, v, m) != (self.config.in_channels, self.config.num_joints,
                         self.config.num_persons):
            raise ValueError(f"expected (N, {self.config.in_channels}, T, "
                             f"{self.config.num_joints}, {self.config.num_persons}), "
                             f"got {tuple(x.shape)}")
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for layer in self.layers:
            x = layer(x)
        return x  # (N*M, 256, T', V)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> temporal feature map (N, 256, T', V), mean over persons."""
        n, m = x.shape[0], x.shape[-1]
        f = self._per_person(x)
        return f.reshape(n, m, *f.shape[1:]).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> (N, 256): mean over T' and V, then over persons."""
        n, m = x.shape[0], x.shape[-1]
        f = self._per_person(x)
        return f.mean(dim=(2, 3)).reshape(n, m, -1).mean(1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
