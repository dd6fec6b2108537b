"""Exact DBSCAN with cosine distance at corpus scale, in O(n) memory.

The radius graph (every pair with cosine distance 1 - <x_i, x_j> <= ``eps`` on L2-normalized
rows) is never stored. Its pairs are visited in blocks (a row range x a column set; every
unordered pair of points lies in exactly one block, or is proven farther than eps) three times:

1. count each point's neighbours, itself included: core points have ``min_samples`` or more;
2. union the core-core pairs as they are found (union-find, each root hooked to the smaller id);
   a block whose core points already share one root is skipped;
3. give each border point (not core, with a neighbour besides itself) the smallest cluster id
   among its core neighbours (only blocks that hold a border point and a core point).

Clusters are numbered by their smallest core point and border points join the smallest cluster
among their core neighbours, which is what scikit-learn's DBSCAN does: the labels are its labels.
Memory: the points, a few integers per point and one block. Noise is -1.

Blocks: ``pruned`` (CPU) visits only the pairs that the triangle inequality on angles around
k-means centroids cannot rule out; ``brute`` visits upper-triangle tiles of every pair with a
blocked matmul on a torch device (GPU), the tile side chosen from the device's free memory
(:func:`tile_plan`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# bytes per entry of a (rows x cols) block at its peak: similarities (4), the within-eps mask (1),
# an int32 root per entry for the masked min / max (4), and slack for the allocator (1)
BLOCK_BYTES_PER_ENTRY = 10
# bytes per point kept on the device besides the embedding: degree (int32), parent (int64),
# cluster label (int32), border best label (int32)
POINT_BYTES = 20


@dataclass
class DBSCANResult:
    labels: np.ndarray          # (n,) int64, -1 noise
    n_clusters: int
    noise_fraction: float
    n_core: int
    n_edges: int                # directed pairs within eps, self pairs included
    seconds: float
    block: int = 0              # tile side (brute) or leftover tile side (pruned)

    def summary(self) -> dict[str, float]:
        return {"clusters": self.n_clusters, "noise_fraction": self.noise_fraction,
                "core": self.n_core, "edges": self.n_edges, "seconds": self.seconds}


@dataclass
class TilePlan:
    """How a brute-force run is laid out on a device of ``free_bytes`` free memory."""

    side: int                   # rows (and columns) per tile
    resident_bytes: int         # the embedding and the per-point arrays on the device
    tile_bytes: int             # one tile at its peak
    free_bytes: int

    @property
    def peak_bytes(self) -> int:
        return self.resident_bytes + self.tile_bytes


def tile_plan(n: int, d: int, free_bytes: int, elem_bytes: int = 4, fraction: float = 0.8,
              multiple: int = 256) -> TilePlan:
    """The largest square tile that fits beside the data in ``fraction`` of the free memory.

    Resident: the (n, d) embedding (``elem_bytes`` each) and :data:`POINT_BYTES` per point; a
    tile of side s costs s * s * :data:`BLOCK_BYTES_PER_ENTRY` at its peak (plus 2 s d for the
    gathered rows, counted too). Raises MemoryError when not even a ``multiple``-side tile fits.
    """
    resident = n * d * elem_bytes + n * POINT_BYTES
    budget = fraction * free_bytes - resident
    if budget <= 0:
        raise MemoryError(f"{n} x {d} embeddings do not fit in {free_bytes / 2**30:.1f} GiB")
    # s^2 * B + 2 s d e <= budget
    b, c = BLOCK_BYTES_PER_ENTRY, 2 * d * elem_bytes
    side = int((-c + np.sqrt(c * c + 4 * b * budget)) / (2 * b))
    side = min(n, side // multiple * multiple) if side >= multiple else 0
    if side <= 0:
        raise MemoryError(f"no {multiple}-row tile fits beside {n} x {d} embeddings in "
                          f"{free_bytes / 2**30:.1f} GiB")
    return TilePlan(side, resident, side * side * b + side * c, int(free_bytes))


def free_memory(device: str) -> int:
    """Free bytes of ``device``: the CUDA allocator's view, or available system memory."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free) + int(torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    try:
        with open("/proc/meminfo") as f:
            info = {k: v for k, _, v in (line.partition(":") for line in f)}
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 8 * 2**30  # not Linux: assume 8 GiB (CPU tiles are capped at 2048 rows anyway)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows, float32, C order (``x`` itself when its rows are unit already: no copy)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if len(x) and float(np.abs(norms - 1.0).max()) <= 1e-6:  # unit to float32 rounding
        return x
    return x / np.maximum(norms, 1e-12)


# -- blocks ----------------------------------------------------------------------------------------
@dataclass
class Block:
    """Rows ``r0:r1`` against columns ``cols`` (an index array, or a (c0, c1) range); with
    ``self_first`` the first ``r1 - r0`` columns are the rows themselves (a diagonal block)."""

    r0: int
    r1: int
    cols: np.ndarray | tuple[int, int]
    self_first: bool


def brute_blocks(n: int, side: int, start: int = 0) -> list[Block]:
    """Upper-triangle tiles over points ``start:n``: every unordered pair exactly once."""
    out = []
    for r0 in range(start, n, side):
        r1 = min(n, r0 + side)
        for c0 in range(r0, n, side):
            out.append(Block(r0, r1, (c0, min(n, c0 + side)), c0 == r0))
    return out


def pruned_blocks(x: np.ndarray, eps: float, parts: int | None = None,
                  outlier_quantile: float = 0.98, spread: float = 1.5,
                  leftover_side: int = 2048, seed: int = 0
                  ) -> tuple[np.ndarray, list[Block]]:
    """A reordering of the points and the blocks that can hold pairs within eps (CPU).

    Points are partitioned by two-level spherical k-means (about ``parts`` centroids, default
    n / 100); points farther from their centroid than ``spread`` x the partition's median angle
    (or beyond the ``outlier_quantile`` of all angles, or beyond the eps angle) are "leftovers",
    so that the partition radii R_p stay small. A pair (x, y) can be within eps (angle t_eps =
    arccos(1 - eps)) only if angle(c_p, c_q) <= R_p + R_q + t_eps (inliers x in p, y in q), or
    angle(y, c_p) <= R_p + t_eps (leftover y, inlier x in p); leftovers meet every leftover.
    Returns (order, blocks): the blocks index ``x[order]``; partition p meets partitions q >= p
    only, so each candidate pair is in one block.
    """
    n = len(x)
    k = max(1, min(parts or n // 100, n))
    cent, assign = _two_level_kmeans(x, k, seed)
    k = len(cent)
    cos = np.einsum("ij,ij->i", x, cent[assign], dtype=np.float64)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    srt = np.lexsort((theta, assign))
    bounds = np.searchsorted(assign[srt], np.arange(k + 1))
    mid = np.minimum((bounds[:-1] + bounds[1:]) // 2, n - 1)
    med = np.where(bounds[1:] > bounds[:-1], theta[srt[mid]], 0.0)
    slack = 2e-3  # radians: float32 rounding of the similarities behind the angles
    t_eps = float(np.arccos(np.clip(1.0 - eps, -1.0, 1.0))) + slack
    inl = ((theta <= spread * med[assign]) & (theta <= np.quantile(theta, outlier_quantile))
           & (theta <= t_eps))
    radius = np.zeros(k)
    np.maximum.at(radius, assign[inl], theta[inl])
    inl_ids = np.flatnonzero(inl)
    inl_ids = inl_ids[np.argsort(assign[inl_ids], kind="stable")]
    order = np.concatenate([inl_ids, np.flatnonzero(~inl)])
    n_in = len(inl_ids)
    starts = np.concatenate([[0], np.cumsum(np.bincount(assign[inl], minlength=k))])
    cent64 = cent.astype(np.float64)
    xl = x[order[n_in:]]
    blocks: list[Block] = []
    pairs = 0
    chunk = 256  # partitions whose centroid angles are computed together (one matmul)
    for p0 in range(0, k, chunk):
        p1 = min(k, p0 + chunk)
        cc = np.arccos(np.clip(cent64[p0:p1] @ cent64.T, -1, 1))          # (chunk, k)
        lc = np.arccos(np.clip(xl @ cent[p0:p1].T, -1, 1)).T if len(xl) else \
            np.zeros((p1 - p0, 0))                                        # (chunk, leftovers)
        for p in range(p0, p1):
            if starts[p + 1] == starts[p]:
                continue
            near = cc[p - p0] <= radius[p] + radius + t_eps
            qs = np.flatnonzero(near[p + 1:]) + p + 1
            qs = qs[starts[qs + 1] > starts[qs]]
            left = n_in + np.flatnonzero(lc[p - p0] <= radius[p] + t_eps)
            cols = np.concatenate([np.arange(starts[p], starts[p + 1])]
                                  + [np.arange(starts[q], starts[q + 1]) for q in qs] + [left])
            blocks.append(Block(int(starts[p]), int(starts[p + 1]), cols, True))
            pairs += (starts[p + 1] - starts[p]) * len(cols)
    left_blocks = brute_blocks(n, leftover_side, n_in)
    blocks += left_blocks
    pairs += sum((b.r1 - b.r0) * (b.cols[1] - b.cols[0]) for b in left_blocks)
    log.info("pruned blocks: %d partitions, %d leftovers, %.4f of all pairs computed",
             k, n - n_in, pairs / (float(n) ** 2 / 2))
    return order, blocks


def _two_level_kmeans(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """About ``k`` unit centroids and each point's centroid: spherical k-means with sqrt(k)
    coarse cells, then within each cell (cost n * 2 sqrt(k) * d instead of n * k * d). Any
    partition keeps the result exact; a good one only makes it faster."""
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


# -- the three passes ------------------------------------------------------------------------------
class _UnionFind:
    """Parent pointers on a torch device; every hook points a root at a smaller id, so the
    forest has no cycles and a component's root is its smallest member."""

    def __init__(self, n: int, device) -> None:
        import torch

        self.parent = torch.arange(n, device=device, dtype=torch.int64)

    def find(self, ids):
        r = self.parent[ids]
        while True:
            g = self.parent[r]
            if bool((g == r).all()):
                break
            r = g
        self.parent[ids] = r  # path compression for the ids asked about
        return r

    def hook(self, a, b) -> None:
        """Point the larger of each root pair at the smaller (several at one root: the
        smallest wins; the others are found again by the caller's loop)."""
        import torch

        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        keep = lo != hi
        if bool(keep.any()):
            self.parent.scatter_reduce_(0, hi[keep], lo[keep], reduce="amin")


class _Engine:
    """The points on a device and the block kernels of the three passes."""

    def __init__(self, xs: np.ndarray, eps: float, device: str, half: bool) -> None:
        import torch

        self.torch = torch
        self.dev = torch.device(device)
        xt = torch.from_numpy(xs).to(self.dev)
        self.x = xt.half() if half else xt
        self.n = len(xs)
        self.thr = 1.0 - eps
        self.small = self.n < 2**31 - 1
        self.big = self.n + 1
        # labels and counts in int32 (n < 2^31): a bool tile summed or a label tile selected
        # is written at 4 bytes per entry, not 8
        self.label_dtype = torch.int32 if self.small else torch.int64

    def cols(self, b: Block):
        t = self.torch
        if isinstance(b.cols, tuple):
            return t.arange(b.cols[0], b.cols[1], device=self.dev)
        return t.from_numpy(b.cols).to(self.dev)

    def mask(self, b: Block, cols):
        """(rows, cols) bool: the pairs of the block within eps."""
        xc = self.x[b.cols[0]:b.cols[1]] if isinstance(b.cols, tuple) else self.x[cols]
        return (self.x[b.r0:b.r1] @ xc.T) >= self.thr

    def _ids(self, v):
        return v.to(self.torch.int32) if self.small else v

    def degrees(self, blocks: list[Block]):
        t = self.torch
        deg = t.zeros(self.n, dtype=t.int32, device=self.dev)  # at most n < 2^31 neighbours
        for b in blocks:
            cols = self.cols(b)
            m = self.mask(b, cols)
            deg[b.r0:b.r1] += m.sum(1, dtype=t.int32)
            k = b.r1 - b.r0 if b.self_first else 0
            if m.shape[1] > k:
                deg.index_add_(0, cols[k:], m[:, k:].sum(0, dtype=t.int32))
            del m
        return deg

    def union_cores(self, blocks: list[Block], core) -> _UnionFind:
        t = self.torch
        uf = _UnionFind(self.n, self.dev)
        for b in blocks:
            cr = core[b.r0:b.r1]
            if not bool(cr.any()):
                continue
            cols = self.cols(b)
            cc = core[cols]
            if not bool(cc.any()):
                continue
            rid = t.arange(b.r0, b.r1, device=self.dev)[cr]
            cid = cols[cc]
            roots = uf.find(t.cat([rid, cid]))
            if bool((roots == roots[0]).all()):
                continue  # every core point of the block is already in one cluster
            m = self.mask(b, cols)[cr][:, cc]
            self._union_block(uf, m, rid, cid)
            del m
        return uf

    def _union_block(self, uf: _UnionFind, m, rid, cid) -> None:
        """Union every pair (rid[i], cid[j]) with m[i, j], without listing the pairs: hook each
        row to the smallest root among its neighbours and each column likewise, until every
        row's neighbours all share its root."""
        t = self.torch
        while True:
            rr, rc = self._ids(uf.find(rid)), self._ids(uf.find(cid))
            mn = t.where(m, rc[None, :], self.big).amin(1)
            mx = t.where(m, rc[None, :], -1).amax(1)
            has = mx >= 0
            if bool((((mn == rr) & (mx == rr)) | ~has).all()):
                return
            uf.hook(rr[has].long(), mn[has].long())
            rr, rc = self._ids(uf.find(rid)), self._ids(uf.find(cid))
            mnc = t.where(m, rr[:, None], self.big).amin(0)
            hasc = mnc < self.big
            uf.hook(rc[hasc].long(), mnc[hasc].long())

    def labels(self, core, uf: _UnionFind, order: np.ndarray | None):
        """Cluster ids of the core points, numbered by their smallest original index."""
        t = self.torch
        lab = t.full((self.n,), -1, dtype=self.label_dtype, device=self.dev)
        core_idx = t.nonzero(core).flatten()
        if len(core_idx) == 0:
            return lab
        root = uf.find(core_idx)
        orig = core_idx if order is None else t.from_numpy(order).to(self.dev)[core_idx]
        uniq, inv = t.unique(root, return_inverse=True)
        first = t.full((len(uniq),), self.big, dtype=t.int64, device=self.dev)
        first.scatter_reduce_(0, inv, orig, reduce="amin")
        rank = t.empty_like(first)
        rank[t.argsort(first)] = t.arange(len(first), device=self.dev)
        lab[core_idx] = rank[inv].to(lab.dtype)
        return lab

    def borders(self, blocks: list[Block], core, deg, lab) -> None:
        """Border points take the smallest cluster id among their core neighbours (in place)."""
        t = self.torch
        border = ~core & (deg > 1)
        if not bool(border.any()):
            return
        best = t.full((self.n,), self.big, dtype=self.label_dtype, device=self.dev)
        for b in blocks:
            br, cr = border[b.r0:b.r1], core[b.r0:b.r1]
            if not bool((br | cr).any()):
                continue
            cols = self.cols(b)
            bc, cc = border[cols], core[cols]
            a = bool(br.any()) and bool(cc.any())
            c = bool(bc.any()) and bool(cr.any())
            if not (a or c):
                continue
            m = self.mask(b, cols)
            rows = t.arange(b.r0, b.r1, device=self.dev)
            if a:
                v = t.where(m[br][:, cc], lab[cols[cc]][None, :], self.big).amin(1)
                best.scatter_reduce_(0, rows[br], v, reduce="amin")
            if c:
                v = t.where(m[cr][:, bc], lab[rows[cr]][:, None], self.big).amin(0)
                best.scatter_reduce_(0, cols[bc], v, reduce="amin")
            del m
        take = border & (best < self.big)
        lab[take] = best[take]


def dbscan_cosine(x: np.ndarray, eps: float = 0.1, min_samples: int = 10,
                  backend: str = "auto", device: str = "cuda", block: int | None = None,
                  half: bool = False, parts: int | None = None) -> DBSCANResult:
    """Exact DBSCAN of the rows of ``x`` (n, d) under cosine distance, in O(n) memory.

    backend "brute" (alias "torch"): upper-triangle tiles by matmul on ``device`` (a GPU),
    ``block`` rows per tile or, when None, the largest tile the device's free memory holds
    (``half``: fp16 similarities, faster, pairs within ~1e-3 of eps may flip); "faiss": the
    same on the CPU (the name of the former range-search backend); "pruned": CPU, only the
    pairs the triangle inequality around k-means centroids cannot rule out (``parts``
    centroids; ``block``: the side of the leftover tiles), much faster on clustered data;
    "auto": brute on CUDA when available, else pruned (20,000 points or more) or CPU brute.
    """
    import torch

    t0 = time.perf_counter()
    n, d = x.shape
    if backend == "auto":
        if torch.cuda.is_available():
            backend, device = "brute", "cuda"
        else:
            backend = "pruned" if n >= 20000 else "faiss"
    if backend == "faiss":
        backend, device = "brute", "cpu"
    elif backend == "torch":
        backend = "brute"
    if backend not in ("brute", "pruned"):
        raise ValueError(f"unknown backend {backend!r}: auto | pruned | brute | torch | faiss")
    if backend == "pruned":
        device = "cpu"
    xn = l2_normalize(x)
    elem = 2 if half else 4
    if block is None:
        side = tile_plan(max(n, 1), d, free_memory(device), elem).side
        if device == "cpu" or backend == "pruned":
            side = min(side, 2048)  # larger CPU tiles only leave the cache
    else:
        side = block
    order = None
    if backend == "pruned":
        order, blocks = pruned_blocks(xn, eps, parts, leftover_side=max(1, side))
        xn = np.ascontiguousarray(xn[order])
    else:
        blocks = brute_blocks(n, max(1, side))
    eng = _Engine(xn, eps, device, half)
    del xn
    t1 = time.perf_counter()
    deg = eng.degrees(blocks)
    core = deg >= min_samples
    t2 = time.perf_counter()
    uf = eng.union_cores(blocks, core)
    lab = eng.labels(core, uf, order)
    del uf
    t3 = time.perf_counter()
    eng.borders(blocks, core, deg, lab)
    log.debug("dbscan: blocks %.1fs, counts %.1fs, unions %.1fs, borders %.1fs", t1 - t0,
              t2 - t1, t3 - t2, time.perf_counter() - t3)
    labels = lab.cpu().numpy().astype(np.int64)
    n_core, n_edges = int(core.sum()), int(deg.sum(dtype=torch.int64))
    del eng, deg, core, lab
    if torch.device(device).type == "cuda":  # hand the tiles' cached memory back (NCCL,
        torch.cuda.empty_cache()              # the next epoch's batches need it)
    if order is not None:
        out = np.empty_like(labels)
        out[order] = labels
        labels = out
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    res = DBSCANResult(labels=labels, n_clusters=n_clusters,
                       noise_fraction=float((labels < 0).mean()) if len(labels) else 0.0,
                       n_core=n_core, n_edges=n_edges,
                       seconds=time.perf_counter() - t0, block=side)
    log.info("dbscan (%s, %s): %d points, %d clusters, noise %.3f, %d pairs, %d blocks, %.1fs",
             backend, device, len(labels), res.n_clusters, res.noise_fraction, res.n_edges,
             len(blocks), res.seconds)
    return res
