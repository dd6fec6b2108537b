"""Re-clustering after each pre-training epoch: every rank embeds its part of the corpus, the
embeddings are gathered to rank 0 only, rank 0 clusters them (exact DBSCAN, guarded against one
dominant cluster: :mod:`tmor.train.guidance`) while the other ranks wait on the CPU group, and the
labels go back to every rank; rank 0 writes them (``labels_epochNNN.parquet``,
``labels.parquet``: ``cluster`` = DBSCAN at the run's eps, ``guide`` = what guidance uses)."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import numpy as np

from tmor import fsio
from tmor.train.config import PretrainConfig
from tmor.train.corpus import pass_loader
from tmor.train.dist import DistContext, from_main, gather_objects_to_main, gather_to_main
from tmor.train.embed import embed_pass
from tmor.train.guidance import guarded_clustering

log = logging.getLogger(__name__)

# clusters.csv columns beside tmor.train.runlog.CLUSTER_FIELDS: what the guard did
GUIDE_FIELDS = ["largest_fraction", "action", "guide_eps", "guide_quantile", "guide_clusters",
                "guide_largest_fraction", "guide_noise_fraction"]


def recluster(trainer: Any, cfg: PretrainConfig, ctx: DistContext) -> dict[str, Any]:
    """Embed the corpus, DBSCAN on rank 0, share the labels; write labels parquet + stats."""
    import pandas as pd

    t0 = time.perf_counter()
    loader = pass_loader(cfg)  # built once per run: its workers are forked once
    index, keys, _, emb = embed_pass(trainer.encoder, loader, ctx.device, trainer.amp_dtype)
    arrays = gather_to_main({"index": index.astype(np.int64), "emb": emb.astype(np.float32)},
                            ctx)
    key_parts = gather_objects_to_main(keys, ctx)
    stats: dict[str, Any] = {}
    table = None
    if arrays is not None and key_parts is not None:  # rank 0
        index, emb = arrays["index"], arrays["emb"]
        keys = [k for part in key_parts for k in part]
        _, first = np.unique(index, return_index=True)  # a sample read twice counts once
        index, emb, keys = index[first], emb[first], [keys[i] for i in first]
        t1 = time.perf_counter()
        labels, guide, info = guarded_clustering(emb, cfg)
        table = np.full(int(index.max()) + 1 if len(index) else 0, -1, np.int64)
        table[index] = guide
        frame = pd.DataFrame({"key": keys, "index": index, "cluster": labels, "guide": guide})
        for name in (f"labels_epoch{trainer.epoch:03d}.parquet", "labels.parquet"):
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            fsio.write_bytes(fsio.join(cfg.out_dir, name), buf.getvalue())
        stats = {"epoch": trainer.epoch, "step": trainer.step, "samples": len(index), **info,
                 "seconds": time.perf_counter() - t0}
        log.info("epoch %d: %d samples, %d clusters at eps %g (largest %.3f), noise %.3f; "
                 "guidance %s: %d clusters at eps %.4g; clustering %.1fs of %.1fs",
                 trainer.epoch, len(index), info["clusters"], cfg.eps,
                 info["largest_fraction"], info["noise_fraction"], info["action"],
                 info["guide_clusters"], info["guide_eps"], time.perf_counter() - t1,
                 stats["seconds"])
    table = from_main(table, ctx)
    trainer.set_table(table)
    return stats
