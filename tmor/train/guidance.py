"""When cluster guidance may steer the loss, and which clusterings it may use.

A fresh encoder maps every sample close to every other one, and DBSCAN then returns one cluster
that makes every candidate a positive: contrastive learning stops (measured on real skeletons:
loss 2.5 -> 9.5). So:

- the learning-rate warm-up and the guidance warm-up are fractions of the run (explicit step or
  epoch counts win); until the guidance warm-up ends the loss is plain instance discrimination;
- a clustering whose largest cluster holds more than ``max_cluster_fraction`` of the samples is
  not used as is: eps is chosen again from the embeddings' k-distances (the
  ``collapse_eps_quantile`` of each sample's distance to its ``min_samples``-th neighbour) and
  the corpus clustered again; if that clustering is dominated too, guidance is held back (every
  sample its own cluster) until the next epoch's clustering;
- a batch whose candidates fall for more than ``max_cluster_fraction`` into one cluster is
  trained without guidance (:func:`batch_dominated`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tmor.train.config import PretrainConfig

log = logging.getLogger(__name__)

LR_WARMUP_CAP = 0.2  # an explicit LR warm-up longer than this fraction of the run is shortened


@dataclass
class Schedule:
    """Step counts of one run."""

    total_steps: int
    steps_per_epoch: int
    lr_warmup: int          # linear LR warm-up steps, then cosine decay to the end
    guidance_start: int     # first step that may use cluster labels

    def describe(self) -> str:
        return (f"{self.total_steps} steps ({self.steps_per_epoch} per epoch): LR warm-up "
                f"{self.lr_warmup} steps, cluster guidance from step {self.guidance_start}"
                + ("" if self.guidance_start < self.total_steps else " (never: the run is "
                   "shorter than the guidance warm-up)"))


def plan_schedule(cfg: PretrainConfig, steps_per_epoch: int, total_steps: int) -> Schedule:
    """The LR warm-up and the guidance start for a run of ``total_steps`` steps.

    LR warm-up: ``warmup_steps`` if set, else ``warmup_frac`` of the run, at most
    :data:`LR_WARMUP_CAP` of it. Guidance: ``guidance_warmup_steps``, else
    ``guidance_warmup_epochs`` epochs, else ``guidance_warmup_frac`` of the run; never before the
    first clustering (the end of the first epoch) when the labels come from the corpus.
    """
    total = max(1, total_steps)
    if cfg.warmup_steps is not None:
        lr_warm = int(cfg.warmup_steps)
        cap = max(1, int(LR_WARMUP_CAP * total))
        if lr_warm > cap:
            log.warning("warmup_steps %d is more than %.0f%% of this %d-step run: using %d",
                        lr_warm, 100 * LR_WARMUP_CAP, total, cap)
            lr_warm = cap
    else:
        lr_warm = max(1, round(cfg.warmup_frac * total))
    if cfg.guidance_warmup_steps is not None:
        start = int(cfg.guidance_warmup_steps)
    elif cfg.guidance_warmup_epochs is not None:
        start = round(cfg.guidance_warmup_epochs * steps_per_epoch)
    else:
        start = round(cfg.guidance_warmup_frac * total)
    sched = Schedule(total, steps_per_epoch, lr_warm, max(0, start))
    log.info("schedule: %s", sched.describe())
    return sched


def largest_fraction(labels: np.ndarray) -> float:
    """Share of all samples in the largest cluster (noise counts in the total, not as one)."""
    lab = labels[labels >= 0]
    if len(labels) == 0 or len(lab) == 0:
        return 0.0
    return float(np.bincount(lab).max() / len(labels))


def kdist_eps(emb: np.ndarray, k: int, quantile: float, sample: int = 4096,
              seed: int = 0) -> float:
    """The ``quantile`` of the cosine distance from sampled points to their k-th nearest
    neighbour (themselves included, as DBSCAN counts them): at this eps about that share of the
    points is core."""
    import faiss

    from tmor.model.cluster import l2_normalize

    x = l2_normalize(emb)
    n, d = x.shape
    k = max(1, min(k, n))
    rows = np.random.default_rng(seed).choice(n, min(n, sample), replace=False)
    index = faiss.IndexFlatIP(d)
    index.add(x)
    sims, _ = index.search(np.ascontiguousarray(x[rows]), k)
    return float(np.quantile(1.0 - sims[:, k - 1].astype(np.float64), quantile))


def guarded_clustering(emb: np.ndarray, cfg: PretrainConfig, cluster: Any = None
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """DBSCAN at the run's eps, the labels safe to guide with, and what was done.

    ``cluster(emb, eps, min_samples)`` -> DBSCANResult (default: exact DBSCAN with the run's
    backend). Returns (labels at ``cfg.eps``, guide labels, info). info: ``clusters``,
    ``noise_fraction``, ``core``, ``largest_fraction`` of the clustering at the run's eps;
    ``action``: ``as_is`` (guide = those labels), ``eps_from_kdist`` (their largest cluster held
    more than ``max_cluster_fraction``; guide = DBSCAN at a smaller eps from the k-distances)
    or ``held_back`` (dominated either way: guide labels all -1, so the next epoch is plain
    instance discrimination); ``guide_eps``, ``guide_clusters``, ``guide_largest_fraction``:
    the last clustering considered for guidance.
    """
    if cluster is None:
        from tmor.model.cluster import dbscan_cosine

        def cluster(e: np.ndarray, eps: float, ms: int):
            return dbscan_cosine(e, eps, ms, backend=cfg.cluster_backend)

    limit = cfg.max_cluster_fraction
    res = cluster(emb, cfg.eps, cfg.min_samples)
    frac = largest_fraction(res.labels)
    info: dict[str, Any] = {"clusters": res.n_clusters, "noise_fraction": res.noise_fraction,
                            "core": res.n_core, "largest_fraction": frac, "action": "as_is",
                            "guide_eps": cfg.eps, "guide_clusters": res.n_clusters,
                            "guide_largest_fraction": frac}
    if frac <= limit:
        return res.labels, res.labels, info
    eps2 = kdist_eps(emb, cfg.min_samples, cfg.collapse_eps_quantile, cfg.kdist_sample,
                     cfg.seed)
    what = (f"largest cluster holds {frac:.3f} of {len(res.labels)} samples at eps "
            f"{cfg.eps:g} (limit {limit:g})")
    if 0.0 < eps2 < cfg.eps:
        res2 = cluster(emb, eps2, cfg.min_samples)
        frac2 = largest_fraction(res2.labels)
        info.update(guide_eps=eps2, guide_clusters=res2.n_clusters,
                    guide_largest_fraction=frac2)
        if frac2 <= limit:
            info["action"] = "eps_from_kdist"
            log.warning("cluster guidance: %s; eps %.4g from the k-distances gives %d clusters, "
                        "largest %.3f: used", what, eps2, res2.n_clusters, frac2)
            return res.labels, res2.labels, info
        what += f", {frac2:.3f} at eps {eps2:.4g} from the k-distances"
    info.update(action="held_back", guide_clusters=0)
    log.warning("cluster guidance held back this epoch (plain instance discrimination): %s",
                what)
    return res.labels, np.full(len(res.labels), -1, dtype=np.int64), info


def batch_dominated(cand_clusters: torch.Tensor, limit: float) -> bool:
    """True when one real cluster (id >= 0) holds more than ``limit`` of a step's candidates."""
    real = cand_clusters[cand_clusters >= 0]
    if real.numel() == 0:
        return False
    return bool(torch.bincount(real).max().item() > limit * cand_clusters.numel())
