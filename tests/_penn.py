"""A few real Penn Action sequences (../shared/data/benchmarks/penn_action/labels), as .mat files
for ``tmor-data import --format penn_action`` and as a named pyskl pickle with the official
split, for the Python API tests."""

from __future__ import annotations

import pickle
from pathlib import Path

from conftest import shared_data

#: every 60th video from 0001: four classes, six train and six test sequences
VIDEOS = ["0001", "0061", "0121", "0181", "0241", "0301", "0361", "0421", "0481", "0541",
          "0601", "0661"]


def penn_files() -> list[str]:
    labels = shared_data("benchmarks", "penn_action", "labels")
    return [str(labels / f"{v}.mat") for v in VIDEOS]


def penn_pickle(path: Path) -> dict:
    """Write a pyskl pickle of the sequences, named by video id (``frame_dir``), labels as class
    ids, split ``train`` / ``test`` as Penn Action's own; returns what was written."""
    from tmor.shards.benchmarks.penn_action import CLASSES, read_penn_mat

    anns, split = [], {"train": [], "test": []}
    for f in penn_files():
        r = read_penn_mat(f)
        name = Path(f).stem
        anns.append({"frame_dir": name, "label": CLASSES.index(r["action"]),
                     "total_frames": int(r["keypoint"].shape[1]), "img_shape": r["img_shape"],
                     "original_shape": r["img_shape"], "keypoint": r["keypoint"],
                     "keypoint_score": r["score"]})
        split["train" if r["train"] else "test"].append(name)
    data = {"split": split, "annotations": anns}
    path.write_bytes(pickle.dumps(data, protocol=4))
    return data
