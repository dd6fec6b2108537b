"""When cluster guidance may steer the loss, and which clusterings it may use.

A fresh encoder maps every sample close to every other one, and DBSCAN then returns one cluster
that makes every candidate a positive: contrastive learning stops (measured on real skeletons:
loss 2.5 -> 9.5). So:

- the learning-rate warm-up and the guidance warm-up are fractions of the run (explicit step or
  epoch counts win); until the guidance warm-up ends the loss is plain instance discrimination;
- DBSCAN sees the embeddings centred on their mean (:func:`cluster_space`);
- a clustering whose largest cluster holds more than ``max_cluster_fraction`` of the samples is
  not used as is: eps is chosen again from the embeddings' k-distances (each sample's distance
  to its ``min_samples``-th neighbour), the largest of the ``collapse_eps_quantiles`` whose
  clustering is within the limit; if every one is dominated, guidance is held back (every
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


def cluster_space(emb: np.ndarray, center: bool = True) -> np.ndarray:
    """The embeddings DBSCAN sees: centred on their mean (then cosine-normalised by DBSCAN).

    UNIK's embedding is a mean of ReLU outputs, so every sample lies in the positive orthant and
    shares one large mean direction: cosine distances crowd near 0 (seen on Penn Action: 90% of
    all pairs within 0.13 after 1 to 4 epochs) and no eps separates anything. Without that shared
    component the same embeddings spread over [0, 2] (median about 1.0).
    """
    x = np.asarray(emb, dtype=np.float32)
    return x - x.mean(0, keepdims=True) if center and len(x) else x


def kdist_quantiles(emb: np.ndarray, k: int, quantiles: list[float], sample: int = 4096,
                    seed: int = 0) -> list[float]:
    """The ``quantiles`` of the cosine distance from sampled points to their k-th nearest
    neighbour (themselves included, as DBSCAN counts them): at eps = the q-quantile about a
    share q of the points is core."""
    import faiss

    from tmor.model.cluster import l2_normalize

    x = l2_normalize(emb)
    n, d = x.shape
    k = max(1, min(k, n))
    rows = np.random.default_rng(seed).choice(n, min(n, sample), replace=False)
    index = faiss.IndexFlatIP(d)
    index.add(x)
    sims, _ = index.search(np.ascontiguousarray(x[rows]), k)
    dist = 1.0 - sims[:, k - 1].astype(np.float64)
    return [float(np.quantile(dist, q)) for q in quantiles]


def guarded_clustering(emb: np.ndarray, cfg: PretrainConfig, cluster: Any = None
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """DBSCAN at the run's eps, the labels safe to guide with, and what was done.

    The embeddings are first centred (:func:`cluster_space`, ``cfg.center_embeddings``).
    ``cluster(emb, eps, min_samples)`` -> DBSCANResult (default: exact DBSCAN with the run's
    backend). Returns (labels at ``cfg.eps``, guide labels, info). info: ``clusters``,
    ``noise_fraction``, ``core``, ``largest_fraction`` of the clustering at the run's eps;
    ``action``: ``as_is`` (guide = those labels), ``eps_from_kdist`` (their largest cluster held
    more than ``max_cluster_fraction``; guide = DBSCAN at the largest eps from the k-distance
    quantiles ``collapse_eps_quantiles``, tried from the highest down, whose largest cluster is
    within the limit) or ``held_back`` (dominated at every eps tried: guide labels all -1, so the
    next epoch is plain instance discrimination); ``guide_eps``, ``guide_quantile``,
    ``guide_clusters``, ``guide_largest_fraction``, ``guide_noise_fraction``: the last clustering
    considered for guidance.

    Why a descending ladder and not one retry: at the median k-distance half of the points are
    core, and on real skeletons those core points chain into one component holding 51-77% of the
    corpus (single linkage); a few quantiles lower the same embeddings give many clusters within
    the limit, and those clusters agree far better with the (unseen) action labels.
    """
    if cluster is None:
        from tmor.model.cluster import dbscan_cosine

        def cluster(e: np.ndarray, eps: float, ms: int):
            return dbscan_cosine(e, eps, ms, backend=cfg.cluster_backend)

    emb = cluster_space(emb, cfg.center_embeddings)
    limit = cfg.max_cluster_fraction
    res = cluster(emb, cfg.eps, cfg.min_samples)
    frac = largest_fraction(res.labels)
    info: dict[str, Any] = {"clusters": res.n_clusters, "noise_fraction": res.noise_fraction,
                            "core": res.n_core, "largest_fraction": frac, "action": "as_is",
                            "guide_eps": cfg.eps, "guide_quantile": None,
                            "guide_clusters": res.n_clusters, "guide_largest_fraction": frac,
                            "guide_noise_fraction": res.noise_fraction}
    if frac <= limit:
        return res.labels, res.labels, info
    what = (f"largest cluster holds {frac:.3f} of {len(res.labels)} samples at eps "
            f"{cfg.eps:g} (limit {limit:g})")
    quantiles = sorted(cfg.collapse_eps_quantiles, reverse=True)
    tried = []
    for q, eps2 in zip(quantiles, kdist_quantiles(emb, cfg.min_samples, quantiles,
                                                  cfg.kdist_sample, cfg.seed), strict=True):
        if not 0.0 < eps2 < cfg.eps:
            continue
        res2 = cluster(emb, eps2, cfg.min_samples)
        frac2 = largest_fraction(res2.labels)
        info.update(guide_eps=eps2, guide_quantile=q, guide_clusters=res2.n_clusters,
                    guide_largest_fraction=frac2, guide_noise_fraction=res2.noise_fraction)
        if frac2 <= limit:
            info["action"] = "eps_from_kdist"
            log.warning("cluster guidance: %s; eps %.4g (k-distance quantile %g) gives %d "
                        "clusters, largest %.3f, noise %.3f: used", what, eps2, q,
                        res2.n_clusters, frac2, res2.noise_fraction)
            return res.labels, res2.labels, info
        tried.append(f"{frac2:.3f} at eps {eps2:.4g} (q {q:g})")
    if tried:
        what += "; from the k-distances " + ", ".join(tried)
    info.update(action="held_back", guide_clusters=0)
    log.warning("cluster guidance held back this epoch (plain instance discrimination): %s",
                what)
    return res.labels, np.full(len(res.labels), -1, dtype=np.int64), info


def batch_dominated(cand_clusters: torch.Tensor, limit: float,
                    num_clusters: int | None = None) -> torch.Tensor:
    """0-d bool tensor: one real cluster (id >= 0) holds more than ``limit`` of a step's
    candidates. Computed where the ids are, without reading back from the device when
    ``num_clusters`` (an upper bound of the ids, + 1) is given."""
    if num_clusters is None:
        num_clusters = int(cand_clusters.max().clamp_min(-1)) + 1
    ids = cand_clusters.long().clamp_min(-1) + 1  # 0: not a real cluster
    counts = torch.zeros(num_clusters + 1, device=cand_clusters.device)
    counts.scatter_add_(0, ids, torch.ones_like(ids, dtype=counts.dtype))
    return counts[1:].max(0).values.gt(limit * cand_clusters.numel()) if num_clusters else \
        torch.zeros((), dtype=torch.bool, device=cand_clusters.device)
