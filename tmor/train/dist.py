"""Distributed helpers for pre-training: process group from torchrun's environment, a gather
that carries gradients back to their rank, and BatchNorm synchronized over ranks on any backend
(torch's SyncBatchNorm needs CUDA; this one also runs on CPU with gloo)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from tmor.devices import resolve_device


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (NCCL on GPU, gloo on CPU), or run alone."""
    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world, local, dev)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on every gathered row
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather(x: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """Concatenate equal-sized ``x`` of all ranks in rank order (identity when alone)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    if grad:
        return _GatherWithGrad.apply(x)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _DistBN:
    """Mixin: batch statistics summed over all ranks in training mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn: nn.modules.batchnorm._BatchNorm = self  # type: ignore[assignment]
        if not (bn.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)  # type: ignore[misc]
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        c = x.shape[1]
        count = torch.tensor([float(x.numel() // c)], device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        total = stats[-1]
        mean = stats[:c] / total
        shape = [1, c] + [1] * (x.dim() - 2)
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / total  # two-pass: stable
        if bn.track_running_stats and bn.running_mean is not None:
            with torch.no_grad():
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1.0 / float(
                    bn.num_batches_tracked)
                unbiased = var * total / (total - 1).clamp_min(1)
                bn.running_mean.mul_(1 - m).add_(m * mean.detach())
                bn.running_var.mul_(1 - m).add_(m * unbiased.detach())
        y = centred * torch.rsqrt(var.view(shape) + bn.eps)
        if bn.affine:
            y = y * bn.weight.view(shape) + bn.bias.view(shape)
        return y.to(x.dtype)


class DistBatchNorm1d(_DistBN, nn.BatchNorm1d):
    pass


class DistBatchNorm2d(_DistBN, nn.BatchNorm2d):
    pass


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm synchronized over ranks: torch's SyncBatchNorm on CUDA, ours elsewhere.

    Ours swaps the class in place, so parameter names and state dicts are unchanged.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for m in module.modules():
        if type(m) is nn.BatchNorm1d:
            m.__class__ = DistBatchNorm1d
        elif type(m) is nn.BatchNorm2d:
            m.__class__ = DistBatchNorm2d
    return module


def all_mean(values: list[float], device: torch.device) -> list[float]:
    """Average of per-rank scalars over ranks (for logging)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


