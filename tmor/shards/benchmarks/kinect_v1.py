"""Kinect v1 text skeletons (UTKinect-Action3D; FORMATS.md section 7) -> trimmed triplets.

``joints_sXX_eYY.txt``: one row per frame, ``frame_id`` then 20 x (x, y, z) metres in the
Kinect SDK 1.x joint order (layout ``kinect_v1``); frame ids can repeat, and every row is kept.
``actionLabel.txt``: blocks of a ``sXX_eYY`` line followed by ``name: start end`` lines (frame ids,
inclusive; ``NaN NaN`` for an action that was not recorded, dropped and counted). Each action
becomes one sample ``sXX_eYY_<name>`` holding the rows whose frame id lies in [start, end].
keypoint = x, y; keypoint_3d = x, y, z; score 1 where a joint is non-zero. Ids: subject, episode.
Split ``xsub_train`` (odd subjects) / ``xsub_test`` (even), the literature's cross-subject
protocol. Metric: top-1 accuracy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tmor.shards.benchmarks.common import SplitBook, input_files, stem, write_benchmark
from tmor.shards.checks import DataError, names_file, naming, read_input
from tmor.shards.codec import Triplet
from tmor.shards.importers import make_triplet, read_number_table

SPLITS = ("xsub_train", "xsub_test")
_SEQ = re.compile(r"s(\d+)_e(\d+)")


@names_file
def read_joints(url: str) -> tuple[np.ndarray, np.ndarray]:
    """``joints_sXX_eYY.txt`` -> (frame ids (T,), xyz (T, 20, 3))."""
    a = read_number_table(url, lambda n: n == 61, "61 (frame id + 20 x 3)")
    if not np.isfinite(a[:, 0]).all():
        raise DataError(f"{url}: frame ids that are not numbers")
    return a[:, 0].astype(np.int64), a[:, 1:].reshape(len(a), 20, 3).astype(np.float32)


@names_file
def read_action_labels(url: str) -> dict[str, list[tuple[str, float, float]]]:
    """``actionLabel.txt`` -> {``sXX_eYY``: [(name, start, end)]}; NaN stays NaN."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    seq = None
    for line in read_input(url).decode("utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        if ":" not in line:
            seq = line
            out[seq] = []
            continue
        if seq is None:
            raise DataError(f"{url}: action line {line!r} before any sXX_eYY line")
        name, _, span = line.partition(":")
        s, e = span.split()[:2]
        out[seq].append((name.strip(), float(s), float(e)))
    return out


def sequence_of(path: str) -> str:
    m = _SEQ.search(stem(path))
    if not m:
        raise DataError(f"{path}: no sXX_eYY in the name")
    return f"s{m.group(1)}_e{m.group(2)}"


def action_triplet(seq: str, name: str, frame_ids: np.ndarray, xyz: np.ndarray, start: float,
                   end: float, fps: float = 30.0, origin: str = "") -> Triplet:
    rows = (frame_ids >= start) & (frame_ids <= end)
    kp3 = xyz[rows][None]  # (1, T, 20, 3)
    score = (np.abs(kp3).sum(-1) > 0).astype(np.float32)
    m = _SEQ.match(seq)
    subject, episode = int(m.group(1)), int(m.group(2))  # type: ignore[union-attr]
    sample = f"{seq}_{name}"
    extra = {"frame_dir": sample, "format": "kinect_v1", "benchmark": "utkinect",
             "ids": {"subject": subject, "episode": episode},
             "span": [int(start), int(end)],
             "splits": ["xsub_train" if subject % 2 else "xsub_test"]}
    return make_triplet(f"kinect_v1://{sample}", kp3[..., :2], score, "kinect_v1", fps, name,
                        kp3, extra, origin=origin)


def import_kinect_v1(paths: Sequence[str], out_root: str, annotations: Sequence[str] = (),
                     fps: float = 30.0, samples_per_shard: int = 1000, overwrite: bool = False,
                     **_: Any) -> dict[str, Any]:
    """Import UTKinect ``joints_sXX_eYY.txt`` files cut by ``actionLabel.txt``
    (``annotations``)."""
    if len(annotations) != 1:
        raise DataError("kinect_v1 needs --annotations actionLabel.txt")
    labels = read_action_labels(annotations[0])
    book = SplitBook(SPLITS)
    names: set[str] = set()

    def gen() -> Iterator[Triplet]:
        for url in input_files(paths, ("joints_*.txt",)):
            seq = sequence_of(url)
            if seq not in labels:
                book.drop("sequence without labels")
                continue
            frame_ids, xyz = read_joints(url)
            for name, s, e in labels[seq]:
                if math.isnan(s) or math.isnan(e):
                    book.drop("action without frames (NaN)")
                    continue
                if not ((frame_ids >= s) & (frame_ids <= e)).any():
                    book.drop("action span outside the sequence")
                    continue
                with naming(url):
                    t = action_triplet(seq, name, frame_ids, xyz, s, e, fps, url)
                names.add(name)
                yield t

    info = {"format": "kinect_v1", "layout": "kinect_v1"}
    summary = write_benchmark(out_root, gen(), book, info, samples_per_shard, overwrite, paths)
    return {**summary, "classes": sorted(names)}
