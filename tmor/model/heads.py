"""Projection heads: an MLP per target modality into one shared contrastive space.

Motion heads map the 256-d UNIK embedding for each pair (mm, mv, mt); target heads map the
frozen video / text embeddings (Dv, Dt) into the same space. The augmented motion view of the
mm pair goes through the mm motion head itself.
"""

from __future__ import annotations

import torch
import torch.nn as nn

PAIRS = ("mm", "mv", "mt")


def mlp(din: int, dhidden: int, dout: int) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(din, dhidden), nn.BatchNorm1d(dhidden), nn.ReLU(inplace=True),
                         nn.Linear(dhidden, dout))


class ProjectionHeads(nn.Module):
    """``motion[pair]`` (embed_dim -> proj_dim) and ``target["mv"|"mt"]`` (Dv / Dt -> proj_dim)."""

    def __init__(self, embed_dim: int = 256, video_dim: int = 512, text_dim: int = 512,
                 proj_dim: int = 256, hidden_dim: int = 512,
                 pairs: tuple[str, ...] = PAIRS) -> None:
        super().__init__()
        unknown = set(pairs) - set(PAIRS)
        if unknown:
            raise ValueError(f"unknown pairs {sorted(unknown)}; choose from {PAIRS}")
        self.pairs = tuple(pairs)
        self.motion = nn.ModuleDict({p: mlp(embed_dim, hidden_dim, proj_dim) for p in pairs})
        dims = {"mv": video_dim, "mt": text_dim}
        self.target = nn.ModuleDict({p: mlp(dims[p], hidden_dim, proj_dim)
                                     for p in pairs if p in dims})

    def project_motion(self, pair: str, z: torch.Tensor) -> torch.Tensor:
        """(N, embed_dim) -> (N, proj_dim), L2-normalized."""
        return nn.functional.normalize(self.motion[pair](z), dim=-1)

    def project_target(self, pair: str, e: torch.Tensor) -> torch.Tensor:
        """Frozen (N, Dv|Dt) embedding -> (N, proj_dim), L2-normalized."""
        return nn.functional.normalize(self.target[pair](e), dim=-1)
