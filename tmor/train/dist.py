"""Distributed helpers for pre-training: process group from torchrun's environment (with an
explicit timeout and a CPU group beside NCCL), a gather that carries gradients back to their rank,
arrays gathered to rank 0 only and results sent back from it over the CPU group, and BatchNorm
synchronized over ranks on any backend (torch's SyncBatchNorm needs CUDA; this one also runs on
CPU with gloo)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from tmor.devices import resolve_device

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    cpu_group: Any = None       # gloo group for host-side exchanges (None: the default group)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto", timeout_s: float = 7200.0) -> DistContext:
    """Join the process group torchrun describes (NCCL on GPU, gloo on CPU), or run alone.

    ``timeout_s`` is the process groups' timeout: it must cover the longest time one rank
    waits for another, the per-epoch embedding pass plus rank 0's clustering. With NCCL a
    gloo group of the same ranks is made too: rank 0 gathers the embeddings and the other
    ranks wait for the labels on it, blocked in a socket rather than in an NCCL kernel.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = rank_device(device, world, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    cpu_group = None
    if world > 1:
        timeout = timedelta(seconds=timeout_s)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timeout)
        if dist.get_backend() != "gloo":
            cpu_group = dist.new_group(backend="gloo", timeout=timeout)
    return DistContext(rank, world, local, dev, cpu_group)


def rank_device(device: str, world: int, local_rank: int) -> torch.device:
    """This process's device: under torchrun with several ranks a CUDA device is the local
    rank's GPU (``cuda`` / ``cuda:K`` alike); alone, the device as named (``cuda:1`` stays
    GPU 1, ``cuda`` / ``auto`` is GPU 0)."""
    dev = torch.device(resolve_device(device))
    if dev.type == "cuda" and world > 1:
        if dev.index not in (None, 0, local_rank):
            log.warning("device %s ignored under torchrun: rank %d uses its local GPU %d",
                        device, local_rank, local_rank)
        return torch.device("cuda", local_rank)
    return dev


def gather_to_main(arrays: dict[str, np.ndarray], ctx: DistContext,
                   chunk_bytes: int = 64 << 20) -> dict[str, np.ndarray] | None:
    """Each array's rows of all ranks, concatenated in rank order, on rank 0 only (None on the
    others). Over the CPU group in chunks of about ``chunk_bytes`` per rank: no GPU memory, and
    only rank 0 holds the whole set. Arrays of one name have the same trailing shape and dtype
    on every rank; their row counts may differ."""
    if not ctx.enabled:
        return dict(arrays)
    group = ctx.cpu_group
    rows = torch.tensor([len(a) for a in arrays.values()], dtype=torch.int64)
    every = [torch.zeros_like(rows) for _ in range(ctx.world)]
    dist.all_gather(every, rows, group=group)
    counts = torch.stack(every).numpy()  # (world, arrays)
    out: dict[str, np.ndarray] | None = {} if ctx.is_main else None
    for j, (name, a) in enumerate(arrays.items()):
        a = np.ascontiguousarray(a)
        row_bytes = max(1, a.dtype.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)))
        step = max(1, chunk_bytes // row_bytes)
        most = int(counts[:, j].max())
        parts: list[list[np.ndarray]] = [[] for _ in range(ctx.world)]
        for s in range(0, most, step):
            mine = np.zeros((step, *a.shape[1:]), a.dtype)
            piece = a[s:s + step]
            mine[:len(piece)] = piece
            t = torch.from_numpy(mine)
            bufs = [torch.empty_like(t) for _ in range(ctx.world)] if ctx.is_main else None
            dist.gather(t, bufs, dst=0, group=group)
            if bufs is not None:
                for r, b in enumerate(bufs):
                    keep = max(0, min(step, int(counts[r, j]) - s))
                    if keep:
                        parts[r].append(b.numpy()[:keep].copy())
        if out is not None:
            flat = [p for rank_parts in parts for p in rank_parts]
            out[name] = (np.concatenate(flat) if flat
                         else np.zeros((0, *a.shape[1:]), a.dtype))
    return out


def gather_objects_to_main(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's picklable ``obj`` on rank 0 (rank order), None elsewhere; CPU group."""
    if not ctx.enabled:
        return [obj]
    box: list[Any] | None = [None] * ctx.world if ctx.is_main else None
    dist.gather_object(obj, box, dst=0, group=ctx.cpu_group)
    return box


def from_main(array: np.ndarray | None, ctx: DistContext, dtype: Any = np.int64) -> np.ndarray:
    """Rank 0's 1-d ``array`` on every rank, over the CPU group. The other ranks call this as
    soon as they are done and wait in it (a gloo receive: no NCCL call spins meanwhile) while
    rank 0 computes the array; the group timeout bounds the wait."""
    if not ctx.enabled:
        assert array is not None
        return array
    group = ctx.cpu_group
    n = torch.tensor([len(array) if ctx.is_main and array is not None else 0],
                     dtype=torch.int64)
    dist.broadcast(n, src=0, group=group)
    t = (torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)) if ctx.is_main
         else torch.empty(int(n.item()), dtype=torch.from_numpy(np.zeros(0, dtype)).dtype))
    dist.broadcast(t, src=0, group=group)
    return t.numpy()


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


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over ranks (for logging), left on its device: the all-reduce is queued
    like any other kernel (NCCL), so nothing here waits for the device."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def gather_host(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Every rank's CPU tensor ``x`` (same shape on each), concatenated along the last dim in
    rank order, over the CPU group: host-side facts (which samples have a video embedding) of
    the global batch without a device round trip. ``x`` itself when alone."""
    if not ctx.enabled:
        return x
    flat = x.to(torch.uint8) if x.dtype == torch.bool else x  # gloo has no bool
    parts = [torch.empty_like(flat) for _ in range(ctx.world)]
    dist.all_gather(parts, flat.contiguous(), group=ctx.cpu_group)
    out = torch.cat(parts, -1)
    return out.bool() if x.dtype == torch.bool else out
