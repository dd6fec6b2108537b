"""UAV-Human skeletons (FORMATS.md section 4) -> triplets in the ``coco17`` layout.

Text per sample, NTU-like: ``numFrame``, then per frame ``numBody``, per body a line of 10 body
values, ``numJoint`` (17) and one line per joint whose first values are x y (z ...). The joints are
COCO-17 image-plane keypoints: x, y are kept as keypoint (score 1 where a joint is non-zero);
the third column, whose meaning is undocumented, is not used. Up to 2 bodies by their position in
the frame (bodyIDs can repeat); a frame with 0 bodies is kept as zeros with score 0.

Ids from the file name ``P070S01G10B00H10UC102000LC092000A031R0_09131758``: person P, setup S,
genders G, backpack B, hat H, upper / lower clothes UC / LC, action A (0-based label), replicate R,
capture time. Splits ``csv1_train`` / ``csv1_test`` / ``csv2_train`` / ``csv2_test`` by person.
Metric: top-1 accuracy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tmor.shards.benchmarks.common import SplitBook, input_files, stem, write_benchmark
from tmor.shards.checks import (
    DataError,
    check_allocation,
    check_declared_count,
    naming,
    read_input,
)
from tmor.shards.codec import Triplet
from tmor.shards.importers import make_triplet

CSV1_TRAIN = frozenset((
    0, 2, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 25, 26, 27, 28, 29, 30, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 55, 56, 57, 59,
    61, 62, 63, 64, 65, 67, 68, 69, 70, 71, 73, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88,
    89, 90, 98, 100, 102, 103, 105, 106, 110, 111, 112, 114, 115, 116, 117, 118,
))
CSV2_TRAIN = frozenset((
    0, 3, 4, 5, 6, 8, 10, 11, 12, 14, 16, 18, 19, 20, 21, 22, 24, 26, 29, 30, 31, 32, 35, 36, 37,
    38, 39, 40, 43, 44, 45, 46, 47, 49, 52, 54, 56, 57, 59, 60, 61, 62, 63, 64, 66, 67, 69, 70, 71,
    72, 73, 74, 75, 77, 78, 79, 80, 81, 83, 84, 86, 87, 88, 89, 91, 92, 93, 94, 95, 96, 97, 99,
    100, 101, 102, 103, 104, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 117, 118,
))
SPLITS = ("csv1_train", "csv1_test", "csv2_train", "csv2_test")
NUM_CLASSES = 155
_NAME = re.compile(r"P(\d+)S(\d+)G(\d+)B(\d+)H(\d+)UC(\d+)LC(\d+)A(\d+)R(\d+)_(\d+)")
_FIELDS = ("person", "setup", "genders", "backpack", "hat", "upper_clothes", "lower_clothes",
           "action", "replicate", "time")


def parse_name(name: str) -> dict[str, int | str]:
    """Ids of a sample name (UAVH ``generate_data.py``'s pattern); codes stay strings."""
    m = _NAME.search(os.path.basename(name))
    if not m:
        raise DataError(f"{name}: not a UAV-Human sample name (P..S..G..B..H..UC..LC..A..R.._..)")
    d: dict[str, int | str] = dict(zip(_FIELDS, m.groups(), strict=True))
    for k in ("person", "setup", "action", "replicate"):
        d[k] = int(d[k])
    if not 0 <= int(d["action"]) < NUM_CLASSES:
        raise DataError(f"{name}: action A{d['action']:03d} outside A000..A{NUM_CLASSES - 1:03d}")
    return d


def splits_of(person: int) -> list[str]:
    """CSv1 / CSv2 membership of a person id."""
    return [f"csv1_{'train' if person in CSV1_TRAIN else 'test'}",
            f"csv2_{'train' if person in CSV2_TRAIN else 'test'}"]


def split_names(names: Sequence[str]) -> dict[str, list[str]]:
    """{split: [sample names]} of names (e.g. ``skes_available_name.txt``)."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for n in names:
        for s in splits_of(int(parse_name(n)["person"])):
            out[s].append(n)
    return out


def read_uav_skeleton(url: str, max_bodies: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A skeleton txt -> keypoint (M, T, 17, 2), score (M, T, 17); the frame count is checked
    against the lines there are before anything is allocated."""
    lines = [ln.split() for ln in read_input(url).decode("utf-8").splitlines()]
    lines = [ln for ln in lines if ln]
    pos = 0

    def take() -> list[str]:
        nonlocal pos
        if pos >= len(lines):
            raise DataError(f"{url}: truncated skeleton file")
        pos += 1
        return lines[pos - 1]

    frames = check_declared_count(url, "frame count", int(take()[0]), len(lines) - 1)
    check_allocation(url, f"{frames} frames", max_bodies * frames * 17 * 2 * 4)
    kp = np.zeros((max_bodies, frames, 17, 2), np.float32)
    for t in range(frames):
        for b in range(int(take()[0])):
            take()  # body values
            joints = int(take()[0])
            rows = [take() for _ in range(joints)]
            if b < max_bodies:
                if joints != 17:
                    raise DataError(f"{url}: frame {t}: {joints} joints, expected 17")
                kp[b, t] = np.asarray([r[:2] for r in rows], np.float32)
    score = (np.abs(kp).sum(-1) > 0).astype(np.float32)
    used = score.reshape(max_bodies, -1).any(1)
    m = max(1, int(np.flatnonzero(used)[-1]) + 1) if used.any() else 1
    return kp[:m], score[:m]


def uav_triplet(url: str, fps: float = 30.0) -> Triplet:
    name = stem(url)
    ids = parse_name(name)
    kp, score = read_uav_skeleton(url)
    a = int(ids["action"])
    extra = {"frame_dir": name, "format": "uav_human", "benchmark": "uav_human",
             "label_id": a, "ids": {k: v for k, v in ids.items() if k != "action"},
             "splits": splits_of(int(ids["person"]))}
    return make_triplet(f"uav_human://{name}", kp, score, "coco17", fps, f"A{a:03d}", None, extra,
                        origin=url)


def import_uav_human(paths: Sequence[str], out_root: str, fps: float = 30.0,
                     samples_per_shard: int = 1000, overwrite: bool = False,
                     **_: Any) -> dict[str, Any]:
    """Import UAV-Human skeleton txt files (or their folder)."""
    book = SplitBook(SPLITS)

    def gen() -> Iterator[Triplet]:
        for url in input_files(paths, ("*.txt",)):
            with naming(url):
                t = uav_triplet(url, fps)
            yield t

    info = {"format": "uav_human", "layout": "coco17",
            "classes": [f"A{a:03d}" for a in range(NUM_CLASSES)]}
    return write_benchmark(out_root, gen(), book, info, samples_per_shard, overwrite, paths)
