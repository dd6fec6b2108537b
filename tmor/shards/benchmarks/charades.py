"""Charades (157 classes, no official skeletons; FORMATS.md section 6) -> untrimmed triplets.

Skeletons come from ``tmor-data extract-pose`` run on the Charades videos: a corpus root (its
``pose/*.tar``, the video id being the file stem of each key's planned source) or ``pose.npz``
files named ``<video id>[.pose].npz``. They are joined by video id with the annotations: the
derived ``charades.json`` (``{id: {subset, duration (s), actions: [[class, start_s, end_s]]}}``)
or the official ``Charades_v1_train.csv`` / ``Charades_v1_test.csv`` (header-keyed; ``actions``
``c092 11.90 21.20;...``). Seconds become frames at the skeleton's fps: [floor(start * fps),
ceil(end * fps)), clipped to the video (its ``duration`` / ``length`` and the skeleton's frames);
segments left empty (end <= start) are dropped and counted. Splits ``train`` / ``test`` from the
subset. Metric: per-frame mAP (``charades_frame_map`` for the 25-frame official localisation
protocol, ``tsu_frame_map`` for the all-frames protocol of the TAD papers).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tmor import fsio
from tmor.shards.benchmarks.common import (
    SplitBook,
    input_files,
    read_class_list,
    write_benchmark,
)
from tmor.shards.checks import DataError, check_class_id, naming, read_input
from tmor.shards.codec import Triplet
from tmor.shards.importers import make_triplet
from tmor.skeleton.npz import decode_pose, keypoint_3d_in_layout

NUM_CLASSES = 157
SPLITS = ("train", "test")


def _csv_videos(url: str) -> dict[str, dict]:
    subset = "testing" if "test" in os.path.basename(url).lower() else "training"
    out = {}
    for row in csv.DictReader(io.StringIO(read_input(url).decode("utf-8"))):
        actions = []
        for item in (row.get("actions") or "").split(";"):
            if item.strip():
                c, s, e = item.split()
                actions.append([int(c[1:]), float(s), float(e)])
        out[row["id"]] = {"subset": subset, "duration": float(row["length"]), "actions": actions}
    return out


def _checked_video(a: Any, num_classes: int) -> dict[str, Any]:
    """One video's annotation with its types and values checked: subset training / testing,
    a finite duration >= 0 (s), actions [class in the class list, finite start, end]."""
    if not isinstance(a, dict):
        raise DataError(f"a {type(a).__name__} where a video's object belongs")
    if a["subset"] not in ("training", "testing"):
        raise DataError(f"subset {a['subset']!r}, expected training or testing")
    duration = float(a.get("duration") or 0)
    actions = [[check_class_id(c, num_classes, f"action {i}"), float(s), float(e)]
               for i, (c, s, e) in enumerate(a["actions"])]
    if not all(math.isfinite(v) for v in [duration] + [x for act in actions for x in act[1:]]):
        raise DataError("non-finite duration or action time")
    return {"subset": a["subset"], "duration": duration, "actions": actions}


def read_annotations(paths: Sequence[str], num_classes: int = NUM_CLASSES) -> dict[str, dict]:
    """charades.json or the official CSVs -> {id: {subset, duration (s), actions (s)}}; every
    entry checked (:func:`_checked_video`), errors naming the file and the video."""
    videos: dict[str, dict] = {}
    for url in paths:
        with naming(url):
            found = (_csv_videos(url) if url.lower().endswith(".csv")
                     else json.loads(read_input(url)))
            if not isinstance(found, dict):
                raise DataError(f"a JSON {type(found).__name__} where an object of videos "
                                "belongs")
        for vid, a in found.items():
            with naming(url, vid):
                videos[vid] = _checked_video(a, num_classes)
    return videos


def seconds_to_frames(actions: Sequence[Sequence[float]], duration: float, fps: float,
                      num_frames: int) -> tuple[list[tuple[int, int, int]], int]:
    """(segments in frames end-exclusive, how many were empty after clipping)."""
    limit = min(num_frames, int(math.ceil(duration * fps))) if duration else num_frames
    out, empty = [], 0
    for c, s, e in actions:
        lo, hi = max(int(math.floor(s * fps)), 0), min(int(math.ceil(e * fps)), limit)
        if hi > lo:
            out.append((int(c), lo, hi))
        else:
            empty += 1
    return out, empty


def iter_poses(paths: Sequence[str]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(video id, decoded pose, where it was read) of corpus roots (pose/*.tar + plan) and
    pose.npz files; each pose.npz inflates within the reader's bound."""
    from tmor.manifests.plan import read_plan
    from tmor.shards.tario import iter_tar_samples

    for p in paths:
        if os.path.isdir(os.path.join(p, "pose")):
            plan = read_plan(p)
            source = dict(zip(plan["key"], plan["source"], strict=True)) if len(plan) else {}
            for tar in sorted(input_files([os.path.join(p, "pose")], ("*.tar",))):
                with fsio.open_url(tar, "rb") as f:
                    for key, members in iter_tar_samples(f, tar):
                        if "pose.npz" in members and key in source:
                            vid = os.path.splitext(os.path.basename(str(source[key])))[0]
                            with naming(tar, key):
                                pose = decode_pose(members["pose.npz"])
                            yield vid, pose, f"{tar}: {key}"
        else:
            for url in input_files([p], ("*.npz",)):
                vid = os.path.basename(url).split(".")[0]
                with naming(url):
                    pose = decode_pose(read_input(url))
                yield vid, pose, url


def charades_triplet(vid: str, pose: dict[str, Any], ann: dict, classes: Sequence[str],
                     book: SplitBook, origin: str = "") -> Triplet:
    kp = np.asarray(pose["keypoint"], np.float32)
    fps = float(pose["fps"])
    segs, empty = seconds_to_frames(ann["actions"], float(ann.get("duration") or 0), fps,
                                    kp.shape[1])
    if empty:
        book.drop("segment empty after clipping", empty)
    split = "train" if ann["subset"] == "training" else "test"
    extra = {"frame_dir": vid, "format": "charades", "benchmark": "charades",
             "ids": {"video": vid}, "splits": [split], "classes": list(classes),
             "segments": [list(s) for s in segs], "duration": ann.get("duration")}
    if "img_shape" in pose:
        extra["img_shape"] = [int(x) for x in np.asarray(pose["img_shape"]).reshape(-1)]
    return make_triplet(f"charades://{vid}", kp, pose["keypoint_score"], pose["layout"], fps,
                        None, keypoint_3d_in_layout(pose), extra, origin=origin)


def import_charades(paths: Sequence[str], out_root: str, annotations: Sequence[str] = (),
                    classes: str | None = None, samples_per_shard: int = 1000,
                    overwrite: bool = False, **_: Any) -> dict[str, Any]:
    """Join extract-pose skeletons with the Charades annotations into untrimmed triplets."""
    if not annotations:
        raise DataError("charades needs --annotations charades.json (or the two CSVs)")
    names = read_class_list(classes) if classes else [f"c{i:03d}" for i in range(NUM_CLASSES)]
    videos = read_annotations(annotations, len(names))
    book = SplitBook(SPLITS)

    def gen() -> Iterator[Triplet]:
        for vid, pose, origin in iter_poses(paths):
            if vid not in videos:
                book.drop("skeleton without annotation")
                continue
            with naming(origin):
                t = charades_triplet(vid, pose, videos[vid], names, book, origin)
            yield t

    info = {"format": "charades", "classes": names, "untrimmed": True}
    return write_benchmark(out_root, gen(), book, info, samples_per_shard, overwrite, paths)
