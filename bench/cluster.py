"""Exact cosine DBSCAN: time and peak memory of tmor.model.cluster (three passes over blocks, no
stored radius graph: "pruned" = k-means + triangle-inequality pruning on the CPU, "faiss" = all
pairs in CPU tiles, "torch" = all pairs in GPU tiles) beside scikit-learn's exact DBSCAN on the
same embeddings (seconds, speed-up, adjusted Rand index and identical labels).

Embeddings: n / --per-cluster blobs on the unit sphere in --dim dimensions (cosine distance within
a blob ~0.09) plus 5% uniform noise; eps 0.12, min_samples 10. Each (size, backend) runs in a
fresh process so that its peak resident memory (data included) is its own.

    python bench/cluster.py --n 20000 100000 --json cluster.json
    python bench/cluster.py --n 1000000 --no-sklearn --backends pruned --json cluster_1m.json
    python bench/cluster.py --n 5000000 --no-sklearn --backends torch   # on a GPU

``--json PATH`` writes, per size and backend, ``seconds``, ``peak_rss_gb``, ``clusters`` (and
``cpu_seconds``, the 1-minute load average at the end, noise, pairs, scikit-learn's figures and
the agreement where scikit-learn ran): on a shared CPU the CPU seconds say more than the wall.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np


def blobs(n: int, dim: int, clusters: int, seed: int = 0, chunk: int = 65536) -> np.ndarray:
    """Blob points and 5% noise, shuffled, float32, generated in chunks (one n x dim array)."""
    rng = np.random.default_rng(seed)
    n_noise = n // 20
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    perm = rng.permutation(n)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        ids = perm[s:s + chunk]
        part = rng.standard_normal((len(ids), dim), dtype=np.float32)
        blob = ids < n - n_noise
        part[blob] *= 0.02
        part[blob] += centres[rng.integers(0, clusters, int(blob.sum()))]
        x[ids] = part
    return x


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def one(n: int, backend: str, args: argparse.Namespace) -> dict:
    """One run in this process: the ours-or-sklearn figures as a dict."""
    from tmor.model.cluster import dbscan_cosine, l2_normalize

    x = l2_normalize(blobs(n, args.dim, max(1, n // args.per_cluster)))
    times, labels = [], None
    out: dict = {}
    cpu = []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        if backend == "sklearn":
            from sklearn.cluster import DBSCAN

            labels = DBSCAN(eps=args.eps, min_samples=args.min_samples, metric="cosine",
                            algorithm="brute", n_jobs=1).fit(x).labels_
        else:
            res = dbscan_cosine(x, args.eps, args.min_samples, backend=backend,
                                device=args.device)
            labels = res.labels
            out.update(pairs=res.n_edges, block=res.block)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert labels is not None
    if args.labels_out:
        np.save(args.labels_out, labels)
    out.update(n=n, backend=backend, seconds=statistics.median(times),
               cpu_seconds=statistics.median(cpu), load_avg_1min=os.getloadavg()[0],
               peak_rss_gb=peak_rss_gb(), clusters=int(labels.max()) + 1,
               noise=float((labels < 0).mean()))
    return out


def run_child(n: int, backend: str, args: argparse.Namespace, labels_out: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--n", str(n), "--backends", backend,
           "--dim", str(args.dim), "--per-cluster", str(args.per_cluster), "--eps",
           str(args.eps), "--min-samples", str(args.min_samples), "--repeats",
           str(args.repeats), "--device", args.device, "--labels-out", labels_out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{backend} n={n} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[20000, 100000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--per-cluster", type=int, default=500)
    ap.add_argument("--eps", type=float, default=0.12)
    ap.add_argument("--min-samples", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--backends", nargs="+", default=["pruned", "faiss"],
                    choices=["pruned", "faiss", "torch", "sklearn"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--json", default=None, help="write the figures per size to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--labels-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.n[0], args.backends[0], args)))
        return

    import tempfile

    from sklearn.metrics import adjusted_rand_score

    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            rows: dict[str, dict] = {}
            for backend in args.backends + ([] if args.no_sklearn else ["sklearn"]):
                rows[backend] = run_child(n, backend, args, f"{tmp}/{backend}_{n}.npy")
                r = rows[backend]
                print(f"n={n} d={args.dim} {backend}: {r['seconds']:.2f} s "
                      f"(CPU {r['cpu_seconds']:.1f} s, load {r['load_avg_1min']:.1f}) "
                      f"({n / r['seconds']:,.0f} points/s), peak RSS {r['peak_rss_gb']:.2f} GB, "
                      f"{r['clusters']} clusters, noise {r['noise']:.3f}", flush=True)
            if "sklearn" in rows:
                ref = np.load(f"{tmp}/sklearn_{n}.npy")
                for backend in args.backends:
                    lab = np.load(f"{tmp}/{backend}_{n}.npy")
                    rows[backend].update(
                        speedup_vs_sklearn=rows["sklearn"]["seconds"] / rows[backend]["seconds"],
                        ari_vs_sklearn=float(adjusted_rand_score(ref, lab)),
                        same_labels_as_sklearn=bool(np.array_equal(ref, lab)))
                    print(f"n={n} {backend} vs sklearn: "
                          f"x{rows[backend]['speedup_vs_sklearn']:.2f} faster, ARI "
                          f"{rows[backend]['ari_vs_sklearn']:.5f}, identical labels "
                          f"{rows[backend]['same_labels_as_sklearn']}", flush=True)
            report[str(n)] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
