"""A FIFO memory queue of projected features with the dataset index of each entry.

Indices (not labels) are stored, so after each re-clustering the queue's cluster labels are
looked up afresh. Empty slots have index -1 and are never returned.
"""

from __future__ import annotations

import torch


class FeatureQueue:
    """Ring buffer of ``size`` (D,) features and their int64 dataset indices."""

    def __init__(self, size: int, dim: int, device: str | torch.device = "cpu") -> None:
        self.size = int(size)
        self.feats = torch.zeros(self.size, dim, device=device)
        self.index = torch.full((self.size,), -1, dtype=torch.long, device=device)
        self.ptr = 0
        self.count = 0

    @torch.no_grad()
    def push(self, feats: torch.Tensor, index: torch.Tensor) -> None:
        """Append (n, D) detached features and their (n,) indices, overwriting the oldest."""
        feats = feats.detach().to(self.feats)
        index = index.to(self.index.device, torch.long)
        n = feats.shape[0]
        if n >= self.size:
            feats, index, n = feats[-self.size:], index[-self.size:], self.size
        pos = (self.ptr + torch.arange(n, device=self.index.device)) % self.size
        self.feats[pos] = feats
        self.index[pos] = index
        self.ptr = (self.ptr + n) % self.size
        self.count = min(self.count + n, self.size)

    def entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled part: features (k, D) and indices (k,), oldest first."""
        if self.count < self.size:
            return self.feats[: self.count], self.index[: self.count]
        order = (self.ptr + torch.arange(self.size, device=self.index.device)) % self.size
        return self.feats[order], self.index[order]

    def state_dict(self) -> dict:
        return {"feats": self.feats.cpu(), "index": self.index.cpu(), "ptr": self.ptr,
                "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.feats = state["feats"].to(self.feats.device)
        self.index = state["index"].to(self.index.device)
        self.size = self.feats.shape[0]
        self.ptr, self.count = int(state["ptr"]), int(state["count"])
