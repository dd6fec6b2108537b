"""Re-clustering after each pre-training epoch: embed the corpus, DBSCAN on rank 0, share the
labels with every rank, and write them (``labels_epochNNN.parquet``, ``labels.parquet``)."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np
import torch

from tmor import fsio
from tmor.train.config import PretrainConfig
from tmor.train.corpus import reader_config
from tmor.train.dist import DistContext
from tmor.train.embed import embed_pass

log = logging.getLogger(__name__)


def _gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    if not ctx.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def recluster(trainer: Any, cfg: PretrainConfig, ctx: DistContext) -> dict[str, float]:
    """Embed the corpus, DBSCAN on rank 0, share the labels; write labels parquet + stats."""
    import pandas as pd

    from tmor.model.cluster import dbscan_cosine
    from tmor.shards.reader import make_loader

    t0 = time.perf_counter()
    loader = make_loader(cfg.shards, reader_config(cfg, train=False))
    parts = _gather_objects(embed_pass(trainer.encoder, loader, ctx.device, trainer.amp_dtype),
                            ctx)
    stats: dict[str, float] = {}
    table = None
    if ctx.is_main:
        index = np.concatenate([p[0] for p in parts])
        keys = sum((p[1] for p in parts), [])
        emb = np.concatenate([p[3] for p in parts])
        _, first = np.unique(index, return_index=True)  # a sample read twice counts once
        index, emb, keys = index[first], emb[first], [keys[i] for i in first]
        res = dbscan_cosine(emb, cfg.eps, cfg.min_samples, backend=cfg.cluster_backend)
        table = np.full(int(index.max()) + 1 if len(index) else 0, -1, np.int64)
        table[index] = res.labels
        frame = pd.DataFrame({"key": keys, "index": index, "cluster": res.labels})
        for name in (f"labels_epoch{trainer.epoch:03d}.parquet", "labels.parquet"):
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            fsio.write_bytes(fsio.join(cfg.out_dir, name), buf.getvalue())
        stats = {"epoch": trainer.epoch, "step": trainer.step, "samples": len(index),
                 "clusters": res.n_clusters, "noise_fraction": res.noise_fraction,
                 "core": res.n_core, "seconds": time.perf_counter() - t0}
        log.info("epoch %d: %d samples, %d clusters, noise %.3f (%.1fs)", trainer.epoch,
                 len(index), res.n_clusters, res.noise_fraction, stats["seconds"])
    table = _broadcast(table, ctx)
    trainer.table = torch.from_numpy(table).to(ctx.device)
    return stats


def _broadcast(obj: Any, ctx: DistContext) -> Any:
    if not ctx.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
