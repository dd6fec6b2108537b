"""Exact DBSCAN through the radius graph equals scikit-learn's exact DBSCAN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from tmor.model.cluster import dbscan_cosine, l2_normalize

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _compare(x: np.ndarray, eps: float, min_samples: int, backend: str) -> tuple[int, int]:
    ours = dbscan_cosine(x, eps, min_samples, backend=backend, device="cpu",
                         block=500 if backend == "faiss" else 1500)
    ref = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine", algorithm="brute").fit(x)
    ref_labels = ref.labels_
    assert ours.n_clusters == ref_labels.max() + 1
    assert (ours.labels < 0).sum() == (ref_labels < 0).sum()
    assert adjusted_rand_score(ref_labels, ours.labels) >= 0.999
    assert ours.n_core == len(ref.core_sample_indices_)
    return ours.n_clusters, int((ours.labels < 0).sum())


def _blobs(seed: int = 0) -> np.ndarray:
    """12 dense blobs of 250-400 points in 32-d, some touching, plus scattered noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, 32))
    centres[1] = centres[0] + 0.35 * rng.standard_normal(32) / np.sqrt(32)  # a close pair
    parts = [c + rng.uniform(0.05, 0.12) * rng.standard_normal((int(rng.integers(250, 400)), 32))
             / np.sqrt(32) * np.linalg.norm(c) for c in centres]
    parts.append(rng.standard_normal((300, 32)))
    x = np.concatenate(parts).astype(np.float32)
    return x[rng.permutation(len(x))]


@pytest.mark.parametrize("backend", ["faiss", "torch", "pruned"])
def test_dense_blobs_match_sklearn(backend: str) -> None:
    x = _blobs()
    d = 1 - l2_normalize(x) @ l2_normalize(x).T
    eps = float(np.quantile(np.sort(d, 1)[:, 20], 0.8))  # leaves border and noise points
    clusters, noise = _compare(x, eps, 20, backend)
    assert clusters >= 8 and noise >= 300


def test_real_skeleton_embeddings_match_sklearn() -> None:
    """Embedding set: flattened normalized real skeleton windows (NTU + FallFree, 3D)."""
    if not DATA.is_dir():
        pytest.skip(f"shared test data not found at {DATA}")
    from _windows import skeleton_windows

    from tmor.skeleton.transforms import to_ctvm

    wins = skeleton_windows(str(DATA), frames=16, stride=2)
    x = np.stack([to_ctvm(w.keypoint_3d, w.score, "ntu25", frames=16, max_persons=1,
                          channels=3, keypoint_3d=w.keypoint_3d) for w in wins])
    x = x.reshape(len(x), -1)
    for eps, backend in ((0.01, "faiss"), (0.03, "faiss"), (0.01, "pruned"), (0.03, "pruned")):
        clusters, noise = _compare(x, eps, 8, backend)
        assert clusters >= 5 and 0 < noise < len(x)


def test_no_core_points_is_all_noise() -> None:
    x = np.eye(20, dtype=np.float32)
    res = dbscan_cosine(x, 0.1, 2, backend="faiss")
    assert res.n_clusters == 0 and (res.labels == -1).all() and res.noise_fraction == 1.0


def test_border_points_take_the_smallest_cluster_like_sklearn() -> None:
    """Border points within eps of core points of two clusters join the one scikit-learn gives
    them (the smaller id), whatever the order of the points."""
    ang = np.concatenate([np.arange(15) * 0.01, 0.5 + np.arange(15) * 0.01, [0.32, 0.33]])
    eps = float(1 - np.cos(0.2))  # the border points see 3 + 3 (or 2 + 4) of the 30, not core
    for seed in range(4):
        perm = np.random.default_rng(seed).permutation(len(ang))
        x = np.stack([np.cos(ang[perm]), np.sin(ang[perm])], 1).astype(np.float32)
        ours = dbscan_cosine(x, eps, 10, backend="faiss", block=8)
        ref = DBSCAN(eps=eps, min_samples=10, metric="cosine", algorithm="brute").fit(x)
        assert ours.n_clusters == 2 and ours.n_core == 30 == len(ref.core_sample_indices_)
        assert np.array_equal(ours.labels, ref.labels_)
        border = perm >= 30
        assert (ours.labels[border] == ours.labels[~border].min()).all()


def test_tiles_fit_5m_x_256_in_80_gb_with_free_memory_mocked(monkeypatch) -> None:
    """The GPU path's tile: 5M x 256 float32 in 80 GB, by the arithmetic the backend uses."""
    import torch

    from tmor.model import cluster

    gb80 = 80 * 10**9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (gb80, gb80))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda dev=None: 0)
    free = cluster.free_memory("cuda")
    assert free == gb80
    n, d = 5_000_000, 256
    plan = cluster.tile_plan(n, d, free)
    # resident: 5.12 GB of embeddings + 28 B per point; a tile: 10 B per entry + its rows
    assert plan.resident_bytes == n * d * 4 + n * cluster.POINT_BYTES
    assert plan.tile_bytes == plan.side**2 * cluster.BLOCK_BYTES_PER_ENTRY + 2 * plan.side * d * 4
    assert plan.peak_bytes <= 0.8 * gb80 < gb80
    assert plan.side >= 65536 and plan.side % 256 == 0
    # the next larger tile would not fit; the former fixed 8192-row block needed 8192 x n
    # float32 plus an n-wide mask: 205 GB
    up = plan.side + 256
    up_bytes = up**2 * cluster.BLOCK_BYTES_PER_ENTRY + 2 * up * d * 4
    assert plan.resident_bytes + up_bytes > 0.8 * gb80
    assert 8192 * n * 5 > 2.5 * gb80
    tiles = len(cluster.brute_blocks(n, plan.side))
    k = -(-n // plan.side)
    assert tiles == k * (k + 1) // 2
    # fp16 similarities: the embedding takes half the room, the tile grows
    assert cluster.tile_plan(n, d, free, elem_bytes=2).side >= plan.side
    with pytest.raises(MemoryError):
        cluster.tile_plan(n, d, 4 * 10**9)


def test_tile_side_comes_from_free_memory(monkeypatch) -> None:
    """block=None: the tile side is tile_plan's for the (mocked) free memory; exact anyway."""
    from tmor.model import cluster

    x = _blobs(1)
    n, d = x.shape
    free = n * d * 4 + n * cluster.POINT_BYTES + 700 * 700 * cluster.BLOCK_BYTES_PER_ENTRY
    free = int(free / 0.8)
    monkeypatch.setattr(cluster, "free_memory", lambda device: free)
    side = cluster.tile_plan(n, d, free).side
    assert 256 <= side < 700
    ours = dbscan_cosine(x, 0.02, 10, backend="torch", device="cpu")
    assert ours.block == side
    ref = DBSCAN(eps=0.02, min_samples=10, metric="cosine", algorithm="brute").fit(x).labels_
    assert np.array_equal(ours.labels, ref)
