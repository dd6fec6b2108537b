"""Metric throughput: per-frame AP (tmor.train.metrics.frame_ap, Charades / TSU definition) vs
scikit-learn's average_precision_score per class, on the same random scores, in the same run.

TSU-sized input by default: --frames frames x --classes classes (51), ~20% positives. Scores are
continuous (no ties), where both definitions give the same AP; the largest difference is printed.
Also times the PKU-MMD event mAP (segments from per-frame scores, tIoU 0.1 / 0.3 / 0.5) on
--videos videos of the same frames (no baseline: the reference is the same algorithm).

    OMP_NUM_THREADS=1 .venv/bin/python bench/transfer_metrics.py [--frames 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tmor.train import metrics as M  # noqa: E402


def _median_seconds(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--classes", type=int, default=51)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    scores = rng.random((a.frames, a.classes))
    targets = (rng.random((a.frames, a.classes)) < 0.2).astype(np.int8)

    t_ours, ours = _median_seconds(lambda: M.frame_ap(scores, targets), a.runs)
    t_skl, skl = _median_seconds(lambda: np.array([
        average_precision_score(targets[:, c], scores[:, c]) for c in range(a.classes)]), a.runs)
    n = a.frames * a.classes
    print(f"frame AP  tmor    {n / t_ours:14,.0f} frame-class/s  ({t_ours:.3f} s)")
    print(f"frame AP  sklearn {n / t_skl:14,.0f} frame-class/s  ({t_skl:.3f} s)")
    print(f"ratio tmor/sklearn {t_skl / t_ours:.2f}x; max |AP diff| "
          f"{np.max(np.abs(ours - skl)):.2e}")

    per = a.frames // a.videos
    smooth = np.ones(31) / 31
    vids = []
    for v in range(a.videos):  # temporally smooth scores so that segments have lengths
        s = np.stack([np.convolve(rng.random(per), smooth, "same") for _ in range(a.classes)], 1)
        y = (np.stack([np.convolve(rng.random(per), smooth, "same") for _ in range(a.classes)],
                      1) > 0.55).astype(np.int8)
        vids.append((f"v{v}", (s - s.min()) / (s.max() - s.min()), y))

    def event() -> dict:
        props, ground = [], []
        for name, s, y in vids:
            props += M.scores_to_segments(s, name, 0.55)
            ground += M.labels_to_segments(y, name)
        return M.event_map(props, ground, a.classes)

    t_ev, ev = _median_seconds(event, a.runs)
    print(f"event mAP {a.videos * per:,} frames x {a.classes} classes: {t_ev:.3f} s "
          f"({a.videos * per / t_ev:,.0f} frames/s); mAP@0.5 {ev[0.5]['map']:.4f}")


if __name__ == "__main__":
    main()
