"""Exact cosine DBSCAN throughput: tmor.model.cluster (radius graph: "pruned" = k-means +
triangle-inequality pruning, "faiss" = brute-force range search, "torch" = blocked matmul) vs
scikit-learn's exact DBSCAN on the same embeddings, side by side (median seconds of --repeats
runs, speed-up, adjusted Rand index against scikit-learn).

Embeddings: --clusters blobs on the unit sphere in --dim dimensions (about n / clusters points
each, cosine distance within a blob ~0.09) plus 5% uniform noise; eps 0.12, min_samples 10.

    OMP_NUM_THREADS=1 python bench/cluster.py --n 20000 100000 --repeats 3
    OMP_NUM_THREADS=1 python bench/cluster.py --n 1000000 --no-sklearn --backends pruned
    python bench/cluster.py --n 1000000 --no-sklearn --backends torch   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def blobs(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_noise = n // 20
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    which = rng.integers(0, clusters, n - n_noise)
    x = centres[which] + 0.02 * rng.standard_normal((n - n_noise, dim)).astype(np.float32)
    noise = rng.standard_normal((n_noise, dim)).astype(np.float32)
    x = np.concatenate([x, noise])
    return x[rng.permutation(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--per-cluster", type=int, default=500)
    ap.add_argument("--eps", type=float, default=0.12)
    ap.add_argument("--min-samples", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--backends", nargs="+", default=["pruned", "faiss"],
                    choices=["pruned", "faiss", "torch"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-sklearn", action="store_true")
    args = ap.parse_args()

    from sklearn.metrics import adjusted_rand_score

    from tmor.model.cluster import dbscan_cosine, l2_normalize

    for n in args.n:
        x = l2_normalize(blobs(n, args.dim, max(1, n // args.per_cluster)))
        results = {}
        for backend in args.backends:
            times, res = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = dbscan_cosine(x, args.eps, args.min_samples, backend=backend,
                                    device=args.device)
                times.append(time.perf_counter() - t0)
            assert res is not None
            results[backend] = (statistics.median(times), res)
            print(f"n={n} d={args.dim} {backend}: {statistics.median(times):.2f} s "
                  f"({n / statistics.median(times):,.0f} points/s), {res.n_clusters} clusters, "
                  f"noise {res.noise_fraction:.3f}, {res.n_edges:,} pairs", flush=True)
        line = f"n={n}"
        if not args.no_sklearn:
            from sklearn.cluster import DBSCAN

            sk_t, ref = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ref = DBSCAN(eps=args.eps, min_samples=args.min_samples, metric="cosine",
                             algorithm="brute", n_jobs=1).fit(x).labels_
                sk_t.append(time.perf_counter() - t0)
            assert ref is not None
            sk = statistics.median(sk_t)
            line += (f" sklearn exact DBSCAN: {sk:.2f} s, {ref.max() + 1} clusters, "
                     f"noise {(ref < 0).mean():.3f}")
            for backend, (t, res) in results.items():
                line += (f" | {backend}: x{sk / t:.2f} faster, "
                         f"ARI {adjusted_rand_score(ref, res.labels):.5f}")
            print(line, flush=True)
        elif len(results) > 1:
            base_t = results[args.backends[-1]][0]
            print(line + " " + ", ".join(f"{b}: x{base_t / t:.2f} vs {args.backends[-1]}"
                                         for b, (t, _) in results.items()), flush=True)


if __name__ == "__main__":
    main()
