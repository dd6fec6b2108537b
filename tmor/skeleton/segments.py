"""Per-frame labels and scores as segments: runs of True, ground-truth segments of labels.

A segment is ``(class_id, start, end_exclusive, confidence, video)`` in frames; used by the
untrimmed importers and by the detection metrics.
"""

from __future__ import annotations

import numpy as np

Segment = tuple[int, float, float, float, str]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array (runs at the borders included)."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    d = np.diff(padded.astype(np.int8))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def labels_to_segments(targets: np.ndarray, video: str = "") -> list[Segment]:
    """Per-frame (T, K) 0/1 labels (or (T,) class ids, -1 = none) -> ground-truth segments."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        k = int(targets.max()) + 1 if targets.size and targets.max() >= 0 else 0
        onehot = np.zeros((len(targets), k), dtype=bool)
        idx = np.flatnonzero(targets >= 0)
        onehot[idx, targets[idx]] = True
        targets = onehot
    out: list[Segment] = []
    for c in range(targets.shape[1]):
        for s, e in runs(targets[:, c] > 0):
            out.append((c, float(s), float(e), 1.0, video))
    return out
