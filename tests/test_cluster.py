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
