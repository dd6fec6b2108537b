"""Untrimmed skeleton sequences with per-frame labels -> the pyskl pickle / triplet shard formats.

An untrimmed annotation is a pyskl annotation (frame_dir, total_frames, keypoint (M,T,V,C),
keypoint_score (M,T,V), layout, fps, label -1) plus ``segments``: [(class_id, start, end), ...]
in frames, end exclusive. The pickle also holds ``classes`` (names of the class ids). In shards the
segments and class names go into each sample's json (``meta["segments"]``, ``meta["classes"]``).

Label sources: PKU-MMD style files (one action a line: ``label,start,end[,confidence]``, frames
inclusive), per-frame label arrays ((T,) class ids with -1 for none, or (T, K) multi-hot), or
trimmed recordings concatenated one after another (:func:`concat_sequences`).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tmor import fsio
from tmor.shards.checks import DataError, names_file, naming, read_input
from tmor.skeleton.segments import labels_to_segments

Segment = tuple[int, int, int]


@names_file
def read_label_file(url: str, end_inclusive: bool = True, label_offset: int = 0) -> list[Segment]:
    """PKU-MMD label file -> [(class_id, start, end_exclusive)]; ``label_offset`` is added to
    each label (PKU-MMD numbers its classes from 1: use -1 for ids from 0). A non-empty line
    that is not ``label,start,end[,confidence]`` integers with start <= end is refused."""
    out = []
    for i, line in enumerate(read_input(url).decode("utf-8").splitlines()):
        vals = line.replace(",", " ").split()
        if not vals:
            continue
        try:
            c, s, e = (int(float(v)) for v in vals[:3])
            if len(vals) < 3 or s < 0 or e < s:
                raise ValueError
        except ValueError:
            raise DataError(f"{url}: line {i + 1} {line.strip()!r}: expected label,start,end "
                            "integers with 0 <= start <= end") from None
        out.append((c + label_offset, s, e + 1 if end_inclusive else e))
    return out


def read_pku_skeleton(url: str, drop_empty: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """PKU-MMD skeleton txt (a line per frame: persons x 25 joints x (x, y, z); 2 persons in the
    release) -> keypoint_3d (M, T, 25, 3) metres, score (M, T, 25) (1 where a joint is non-zero);
    persons never seen are dropped when ``drop_empty``."""
    from tmor.shards.importers import read_number_table

    a = read_number_table(url, lambda n: n > 0 and n % 75 == 0,
                          "a multiple of 75 (persons x 25 x 3)", np.float32)
    kp3 = a.reshape(len(a), -1, 25, 3).transpose(1, 0, 2, 3)
    score = (np.abs(kp3).sum(-1) > 0).astype(np.float32)
    keep = score.reshape(len(kp3), -1).sum(1) > 0
    if drop_empty and keep.any():
        kp3, score = kp3[keep], score[keep]
    return np.ascontiguousarray(kp3), score


def frame_labels_to_segments(labels: np.ndarray) -> list[Segment]:
    """(T,) class ids (-1 none) or (T, K) multi-hot -> [(class, start, end_exclusive)]."""
    return [(int(c), int(s), int(e)) for c, s, e, _, _ in labels_to_segments(labels)]


def concat_sequences(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[Segment]]:
    """Concatenate (keypoint, score, keypoint_3d | None, class_id | None) recordings in time;
    each part with a class becomes one segment. Persons are zero-padded to the most persons."""
    m = max(p[0].shape[0] for p in parts)

    def pad(a: np.ndarray) -> np.ndarray:
        if a.shape[0] == m:
            return a
        return np.concatenate([a, np.zeros((m - a.shape[0], *a.shape[1:]), a.dtype)])

    segs: list[Segment] = []
    t = 0
    for kp, _, _, c in parts:
        if c is not None:
            segs.append((int(c), t, t + kp.shape[1]))
        t += kp.shape[1]
    kp = np.concatenate([pad(np.asarray(p[0], np.float32)) for p in parts], axis=1)
    sc = np.concatenate([pad(np.asarray(p[1], np.float32)) for p in parts], axis=1)
    kp3 = None
    if all(p[2] is not None for p in parts):
        kp3 = np.concatenate([pad(np.asarray(p[2], np.float32)) for p in parts], axis=1)
    return kp, sc, kp3, segs


def untrimmed_annotation(
    name: str, keypoint: np.ndarray, score: np.ndarray, segments: Iterable[Segment],
    layout: str, fps: float = 30.0, keypoint_3d: np.ndarray | None = None,
) -> dict[str, Any]:
    """One pyskl-style annotation with ``segments``; 3D sequences store keypoint_3d as keypoint."""
    kp = np.asarray(keypoint_3d if keypoint_3d is not None else keypoint, np.float32)
    return {
        "frame_dir": name, "total_frames": int(kp.shape[1]), "label": -1,
        "img_shape": (0, 0), "original_shape": (0, 0),
        "keypoint": kp, "keypoint_score": np.asarray(score, np.float32),
        "layout": layout, "fps": float(fps),
        "segments": [(int(c), int(s), int(e)) for c, s, e in segments],
    }


def write_untrimmed_pickle(path: str, annotations: list[dict[str, Any]], classes: list[str],
                           split: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Write {'split', 'annotations', 'classes'}; returns counts."""
    split = split or {"all": [a["frame_dir"] for a in annotations]}
    fsio.write_bytes(path, pickle.dumps(
        {"split": split, "annotations": annotations, "classes": list(classes)}))
    return {"sequences": len(annotations), "classes": len(classes),
            "frames": int(sum(a["total_frames"] for a in annotations)),
            "segments": int(sum(len(a["segments"]) for a in annotations))}


def write_untrimmed_shards(root: str, annotations: list[dict[str, Any]], classes: list[str],
                           split: dict[str, list[str]] | None = None,
                           samples_per_shard: int = 1000, overwrite: bool = False
                           ) -> dict[str, Any]:
    """Write the sequences as skeleton-only triplets into ``<root>/triplets`` (segments and class
    names in each json) through the shards helper's importer."""
    from tmor.shards.importers import make_triplet, write_imported

    def gen():  # noqa: ANN202
        for a in annotations:
            kp = a["keypoint"]
            kp3 = kp if kp.shape[-1] == 3 else None
            yield make_triplet(
                f"untrimmed://{a['frame_dir']}", kp[..., :2], a["keypoint_score"], a["layout"],
                a["fps"], None, kp3,
                {"frame_dir": a["frame_dir"], "segments": [list(s) for s in a["segments"]],
                 "classes": list(classes), "format": "untrimmed"})

    split = {k: list(v) for k, v in (split or {}).items()}
    return write_imported(root, gen(), samples_per_shard,
                          {"format": "untrimmed", "classes": list(classes), "split": split},
                          overwrite)


def import_pku_style(
    skeletons: Sequence[str], labels: Sequence[str], out: str, classes: Sequence[str],
    layout: str = "ntu25", fps: float = 30.0, label_offset: int = 0,
    split: dict[str, list[str]] | None = None, overwrite: bool = False,
) -> dict[str, Any]:
    """Pair skeleton files with label files by file stem and write a pickle (``out`` ending in
    .pkl) or shards (``out`` a corpus root). Skeletons: PKU-MMD txt, NTU .skeleton / npy, Kinect
    CSV (by extension, through :mod:`tmor.shards.importers`)."""
    from tmor.shards import importers as imp

    by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in labels}
    anns = []
    for sk in skeletons:
        stem = os.path.splitext(os.path.basename(sk))[0]
        lab = by_stem.get(stem)
        if lab is None:
            raise DataError(f"{sk}: no label file named {stem}.*")
        with naming(sk):
            if sk.endswith(".txt"):
                kp3, score = read_pku_skeleton(sk)
            elif sk.endswith(".csv"):
                kp3, score = imp.read_kinect_csv(sk)
            else:
                kp3, score = (imp.read_ntu_skeleton(sk) if sk.endswith(".skeleton")
                              else imp.read_ntu_npy(sk))
        segs = read_label_file(lab, label_offset=label_offset)
        bad = [c for c, _, _ in segs if not 0 <= c < len(classes)]
        if bad:
            raise DataError(f"{lab}: class ids {sorted(set(bad))} outside 0..{len(classes) - 1}"
                             " (1-based label files need label_offset=-1)")
        anns.append(untrimmed_annotation(stem, kp3[..., :2], score, segs, layout, fps, kp3))
    if out.endswith((".pkl", ".pickle")):
        return write_untrimmed_pickle(out, anns, list(classes), split)
    return write_untrimmed_shards(out, anns, list(classes), split, overwrite=overwrite)
