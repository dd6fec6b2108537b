"""Exact DBSCAN with cosine distance at corpus scale, through the radius graph.

Every pair within ``eps`` (cosine distance 1 - <x_i, x_j> on L2-normalized rows) is found:
faiss range search on the CPU, blocked matmul on the GPU. Core points have degree (self
included) >= ``min_samples``; clusters are the connected components of the core points; a border
point joins the cluster of its neighbouring core point with the smallest cluster id, clusters
being numbered by their smallest core point, which is what scikit-learn's DBSCAN does. Noise is -1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class DBSCANResult:
    labels: np.ndarray          # (n,) int64, -1 noise
    n_clusters: int
    noise_fraction: float
    n_core: int
    n_edges: int                # directed pairs within eps, self pairs included
    seconds: float

    def summary(self) -> dict[str, float]:
        return {"clusters": self.n_clusters, "noise_fraction": self.noise_fraction,
                "core": self.n_core, "edges": self.n_edges, "seconds": self.seconds}


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def radius_graph_faiss(x: np.ndarray, eps: float, block: int = 8192
                       ) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr int64, indices int32) of all pairs with cosine distance <= eps (CPU)."""
    import faiss

    n, d = x.shape
    index = faiss.IndexFlatIP(d)
    index.add(x)
    thr = np.float32(1.0 - eps)
    # faiss keeps similarities strictly above the radius: step one ulp below the threshold
    radius = float(np.nextafter(thr, np.float32(-np.inf)))
    indptr = np.zeros(n + 1, dtype=np.int64)
    parts: list[np.ndarray] = []
    for s in range(0, n, block):
        lims, sims, ids = index.range_search(x[s:s + block], radius)
        keep = sims >= thr
        ids = ids[keep].astype(np.int32)
        cum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        lims = lims.astype(np.int64)
        counts = cum[lims[1:]] - cum[lims[:-1]]
        indptr[s + 1:s + 1 + len(counts)] = counts
        parts.append(ids)
    np.cumsum(indptr, out=indptr)
    indices = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    return indptr, indices


def radius_graph_torch(x: np.ndarray, eps: float, device: str = "cuda", block: int = 8192,
                       half: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """CSR of all pairs within eps by blocked matmul on a torch device (GPU)."""
    import torch

    xt = torch.from_numpy(x).to(device)
    if half:
        xt = xt.half()
    n = xt.shape[0]
    thr = 1.0 - eps
    counts, parts = [], []
    for s in range(0, n, block):
        sims = xt[s:s + block] @ xt.T
        rows, cols = torch.nonzero(sims >= thr, as_tuple=True)
        counts.append(torch.bincount(rows, minlength=sims.shape[0]).cpu())
        parts.append(cols.to(torch.int32).cpu())  # rows come out sorted, row-major
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(torch.cat(counts).numpy(), out=indptr[1:])
    return indptr, torch.cat(parts).numpy()


def radius_graph_pruned(x: np.ndarray, eps: float, parts: int | None = None,
                        outlier_quantile: float = 0.98, spread: float = 1.5, block: int = 2048,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact radius graph with pruning by the triangle inequality on angles (CPU).

    Points are partitioned by two-level spherical k-means (about ``parts`` centroids, default
    n / 100); points
    farther from their centroid than ``spread`` x the partition's median angle (or beyond the
    ``outlier_quantile`` of all angles, or beyond the eps angle) are "leftovers", so that the
    partition radii R_p stay small.
    A pair (x, y) can be within eps (angle t_eps = arccos(1 - eps)) only if
    angle(c_p, c_q) <= R_p + R_q + t_eps (inliers x in p, y in q), or angle(y, c_p) <= R_p + t_eps
    (leftover y, inlier x in p); leftovers are compared with every leftover. Only those candidate
    pairs are computed (BLAS), so the result is the exact graph, fast when the data is clustered.
    Returns (order, indptr, indices): the CSR is over the points ``x[order]``.
    """
    n, d = x.shape
    k = max(1, min(parts or n // 100, n))
    cent, assign = _two_level_kmeans(x, k, seed)
    k = len(cent)
    cos = np.einsum("ij,ij->i", x, cent[assign], dtype=np.float64)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    # leftovers: far from their centroid relative to the partition's median angle (noise that
    # would otherwise inflate the radius), beyond the global quantile, or beyond the eps angle
    srt = np.lexsort((theta, assign))
    bounds = np.searchsorted(assign[srt], np.arange(k + 1))
    mid = np.minimum((bounds[:-1] + bounds[1:]) // 2, n - 1)
    med = np.where(bounds[1:] > bounds[:-1], theta[srt[mid]], 0.0)
    slack = 2e-3  # radians: float32 rounding of the similarities behind the angles
    t_eps = float(np.arccos(1.0 - eps)) + slack
    inl = ((theta <= spread * med[assign]) & (theta <= np.quantile(theta, outlier_quantile))
           & (theta <= t_eps))
    radius = np.zeros(k)
    np.maximum.at(radius, assign[inl], theta[inl])
    inl_ids = np.flatnonzero(inl)
    inl_ids = inl_ids[np.argsort(assign[inl_ids], kind="stable")]
    order = np.concatenate([inl_ids, np.flatnonzero(~inl)])
    n_in = len(inl_ids)
    xs = np.ascontiguousarray(x[order])
    starts = np.concatenate([[0], np.cumsum(np.bincount(assign[inl], minlength=k))])
    cent64 = cent.astype(np.float64)
    xl = xs[n_in:]

    def cc_row(p: int) -> np.ndarray:  # angles between centroid p and all centroids
        return np.arccos(np.clip(cent64 @ cent64[p], -1, 1))

    def left_ang(p: int) -> np.ndarray:  # angles between the leftovers and centroid p
        return np.arccos(np.clip(xl @ cent[p], -1, 1))

    thr = np.float32(1.0 - eps)
    counts = np.zeros(n, dtype=np.int64)
    parts_out: list[np.ndarray] = []

    def ranges(qs: np.ndarray) -> np.ndarray:
        if len(qs) == 0:
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(starts[q], starts[q + 1]) for q in qs])

    computed = [0]

    def run(rows0: int, rows1: int, cols: np.ndarray) -> None:
        computed[0] += (rows1 - rows0) * len(cols)
        xc = xs[cols]
        for r0 in range(rows0, rows1, block):
            r1 = min(r0 + block, rows1)
            sims = xs[r0:r1] @ xc.T
            rr, cidx_ = np.nonzero(sims >= thr)
            counts[r0:r1] = np.bincount(rr, minlength=r1 - r0)
            parts_out.append(cols[cidx_].astype(np.int32))

    for p in range(k):
        if starts[p + 1] == starts[p]:
            continue
        qs = np.flatnonzero(cc_row(p) <= radius[p] + radius + t_eps)
        cols = np.concatenate([ranges(qs),
                               n_in + np.flatnonzero(left_ang(p) <= radius[p] + t_eps)])
        run(int(starts[p]), int(starts[p + 1]), cols)
    for b0 in range(n_in, n, block):
        b1 = min(b0 + block, n)
        ang = np.arccos(np.clip(xs[b0:b1] @ cent.T, -1, 1))
        qs = np.flatnonzero((ang <= radius + t_eps).any(0))
        run(b0, b1, np.concatenate([ranges(qs), np.arange(n_in, n)]))
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate(parts_out) if parts_out else np.zeros(0, np.int32)
    log.info("pruned radius graph: %d partitions, %d leftovers, %.4f of all pairs computed",
             k, n - n_in, computed[0] / float(n) ** 2)
    return order, indptr, indices


def _two_level_kmeans(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """About ``k`` unit centroids and each point's centroid: spherical k-means with sqrt(k)
    coarse cells, then within each cell (cost n * 2 sqrt(k) * d instead of n * k * d). Any
    partition keeps the pruned graph exact; a good one only makes it faster."""
    import faiss

    n, d = x.shape

    def kmeans(pts: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        kk = max(1, min(kk, len(pts)))
        if kk == 1:
            c = pts.mean(0, keepdims=True)
        else:
            km = faiss.Kmeans(d, kk, niter=10, spherical=True, seed=seed,
                              max_points_per_centroid=64)
            km.train(pts)
            c = km.centroids
        c = (c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        index = faiss.IndexFlatIP(d)
        index.add(c)
        return c, index.search(pts, 1)[1][:, 0].astype(np.int64)

    k1 = max(1, int(round(np.sqrt(k))))
    coarse_c, coarse = kmeans(x, k1)
    cents, assign = [], np.empty(n, np.int64)
    offset = 0
    for c in range(len(coarse_c)):
        members = np.flatnonzero(coarse == c)
        if len(members) == 0:
            continue
        fine_c, fine = kmeans(np.ascontiguousarray(x[members]), round(k * len(members) / n))
        assign[members] = offset + fine
        cents.append(fine_c)
        offset += len(fine_c)
    return np.concatenate(cents), assign


def labels_from_graph(indptr: np.ndarray, indices: np.ndarray, min_samples: int,
                      ids: np.ndarray | None = None) -> np.ndarray:
    """DBSCAN labels from the radius graph (CSR, self pairs included).

    ``ids``: the original index of each node when the graph is over a permutation of the points
    (clusters are numbered by their smallest original core index, as scikit-learn does)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(indptr) - 1
    degree = np.diff(indptr)
    core = degree >= min_samples
    labels = np.full(n, -1, dtype=np.int64)
    if not core.any():
        return labels
    core_ids = np.flatnonzero(core)
    # the core-core subgraph, without copying the whole graph (memory: ~1 byte per edge extra)
    keep = core[indices]
    keep &= np.repeat(core, degree)
    kept = np.zeros(n, dtype=np.int64)
    rows_nz = degree > 0
    kept[rows_nz] = np.add.reduceat(keep, indptr[:-1][rows_nz], dtype=np.int64)
    sub_indptr = np.concatenate([[0], np.cumsum(kept)])
    small = sub_indptr[-1] < 2**31 and n < 2**31
    itype = np.int32 if small else np.int64
    sub = sp.csr_matrix((np.ones(int(sub_indptr[-1]), np.int8),
                         indices[keep].astype(itype, copy=False), sub_indptr.astype(itype)),
                        shape=(n, n))
    del keep
    _, comp_all = connected_components(sub, directed=False)
    del sub
    _, comp = np.unique(comp_all[core_ids], return_inverse=True)
    # number clusters by their smallest core point (scikit-learn's order of discovery)
    first = np.full(comp.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, comp, core_ids if ids is None else np.asarray(ids)[core_ids])
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    labels[core_ids] = rank[comp]
    # border points: the smallest cluster id among their core neighbours
    border = np.flatnonzero(~core & (degree > 0))
    if len(border):
        cnt = degree[border]
        rows = np.repeat(np.arange(len(border)), cnt)
        offs = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        nb = indices[np.repeat(indptr[border], cnt) + offs].astype(np.int64)
        is_core = core[nb]
        rows, nb = rows[is_core], nb[is_core]
        best = np.full(len(border), np.iinfo(np.int64).max)
        np.minimum.at(best, rows, labels[nb])
        has = best != np.iinfo(np.int64).max
        labels[border[has]] = best[has]
    return labels


def dbscan_cosine(x: np.ndarray, eps: float = 0.1, min_samples: int = 10,
                  backend: str = "auto", device: str = "cuda", block: int = 8192,
                  half: bool = False, parts: int | None = None) -> DBSCANResult:
    """Exact DBSCAN of the rows of ``x`` (n, d) under cosine distance.

    backend "faiss": CPU range search; "torch": blocked matmul on ``device`` (``half`` for fp16
    similarities: faster, pairs within ~1e-3 of eps may flip); "pruned": CPU, only the pairs
    that the triangle inequality around k-means centroids cannot rule out (``parts`` centroids;
    exact, much faster on clustered data); "auto": torch on CUDA when available, else pruned
    (20,000 points or more) or faiss.
    """
    import time

    t0 = time.perf_counter()
    if backend == "auto":
        import torch

        device = "cuda"
        if torch.cuda.is_available():
            backend = "torch"
        else:
            backend = "pruned" if len(x) >= 20000 else "faiss"
    xn = l2_normalize(x)
    order = None
    if backend == "faiss":
        indptr, indices = radius_graph_faiss(xn, eps, block)
    elif backend == "torch":
        indptr, indices = radius_graph_torch(xn, eps, device, block, half)
    elif backend == "pruned":
        order, indptr, indices = radius_graph_pruned(xn, eps, parts)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    labels = labels_from_graph(indptr, indices, min_samples, order)
    if order is not None:
        out = np.empty_like(labels)
        out[order] = labels
        labels = out
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    res = DBSCANResult(labels=labels, n_clusters=n_clusters,
                       noise_fraction=float((labels < 0).mean()) if len(labels) else 0.0,
                       n_core=int((np.diff(indptr) >= min_samples).sum()),
                       n_edges=int(len(indices)), seconds=time.perf_counter() - t0)
    log.info("dbscan: %d points, %d clusters, noise %.3f, %d edges, %.1fs", len(labels),
             res.n_clusters, res.noise_fraction, res.n_edges, res.seconds)
    return res
