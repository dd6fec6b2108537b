"""Toyota Smarthome Untrimmed (TSU, 51 classes; FORMATS.md section 2) -> untrimmed triplets.

Skeletons: one LCR-Net JSON per video (``results_PxxTyyCzz_lcrnet+v3d.json`` or
``PxxTyyCzz.json``), every frame kept (empty frames are zeros with score 0, so frame-indexed
labels stay aligned). Annotations: the frame-level JSONs ``smarthome_CS_51.json`` /
``smarthome_CV_51.json`` (``{vid: {subset, duration (frames), actions: [[class, start, end]]}}``);
the ``subset`` field is protocol-specific, so each file gives its own ``cs_*`` / ``cv_*`` splits.
A frame t is positive for an action when start < t < end (the official loader's strict rule),
stored as the segment (class, start + 1, end) with end exclusive, clipped to the skeleton.
Class ids outside the class list, unknown subsets and malformed entries are refused, naming the
annotation file and the video.
Metric: per-frame mAP over classes with non-zero AP (``tmor.train.metrics.tsu_frame_map``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from tmor.shards.benchmarks.common import (
    SplitBook,
    input_files,
    read_class_list,
    write_benchmark,
)
from tmor.shards.benchmarks.lcrnet import read_lcrnet
from tmor.shards.checks import DataError, check_class_id, naming, read_input
from tmor.shards.codec import Triplet
from tmor.shards.importers import make_triplet

#: Action_list.txt order (not alphabetical)
CLASSES = (
    "Enter", "Walk", "Make_coffee", "Get_water", "Make_coffee.Pour_water", "Use_Drawer",
    "Make_coffee.Pour_grains", "Use_telephone", "Leave", "Put_something_on_table",
    "Take_something_off_table", "Pour.From_kettle", "Stir_coffee/tea", "Drink.From_cup",
    "Dump_in_trash", "Make_tea", "Make_tea.Boil_water", "Use_cupboard", "Insert_tea_bag", "Read",
    "Take_pills", "Use_fridge", "Clean_dishes", "Clean_dishes.Put_something_in_sink", "Eat_snack",
    "Sit_down", "Watch_TV", "Use_laptop", "Get_up", "Drink.From_bottle", "Pour.From_bottle",
    "Drink.From_glass", "Lay_down", "Drink.From_can", "Write", "Breakfast",
    "Breakfast.Spread_jam_or_butter", "Breakfast.Cut_bread", "Breakfast.Eat_at_table",
    "Breakfast.Take_ham", "Clean_dishes.Dry_up", "Wipe_table", "Cook", "Cook.Cut",
    "Cook.Use_stove", "Cook.Stir", "Cook.Use_oven", "Clean_dishes.Clean_with_water", "Use_tablet",
    "Use_glasses", "Pour.From_can",
)
_VID = re.compile(r"P(\d+)T(\d+)C(\d+)")
_SUBSET = {"training": "train", "testing": "test"}


def video_id(path: str) -> str:
    """``PxxTyyCzz`` of a TSU file name."""
    m = _VID.search(os.path.basename(path))
    if not m:
        raise DataError(f"{path}: no TSU video id (PxxTyyCzz) in the name")
    return m.group(0)


def protocol_of(path: str) -> str:
    """``cs`` or ``cv`` from an annotation file name (``smarthome_CS_51.json``)."""
    name = os.path.basename(path).upper()
    for p in ("CV", "CS"):
        if re.search(rf"(^|[^A-Z]){p}([^A-Z0-9]|$)", name):
            return p.lower()
    raise DataError(f"{path}: cannot tell CS from CV by the name (expected ..._CS_... / _CV_)")


def read_annotations(paths: Sequence[str], num_classes: int = len(CLASSES)
                     ) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Annotation JSONs -> ({vid: {duration, actions}}, {vid: [split names]}); every class id
    must lie in [0, num_classes)."""
    videos: dict[str, dict] = {}
    member: dict[str, list[str]] = {}
    for url in paths:
        proto = protocol_of(url)
        with naming(url):
            obj = json.loads(read_input(url))
            if not isinstance(obj, dict):
                raise DataError(f"a JSON {type(obj).__name__} where an object of videos belongs")
        for vid, a in obj.items():
            with naming(url, vid):
                if a["subset"] not in _SUBSET:
                    raise DataError(f"subset {a['subset']!r}, expected training or testing")
                actions = [(check_class_id(c, num_classes, f"action {i}"), float(s), float(e))
                           for i, (c, s, e) in enumerate(a["actions"])]
                videos.setdefault(vid, {"duration": int(a["duration"]), "actions": actions})
            member.setdefault(vid, []).append(f"{proto}_{_SUBSET[a['subset']]}")
    return videos, member


def frame_segments(actions: Sequence[Sequence[float]], num_frames: int
                   ) -> list[tuple[int, int, int]]:
    """[[class, start, end], ...] -> (class, start + 1, end) end-exclusive (start < t < end),
    clipped to ``num_frames``; empty ones dropped."""
    out = []
    for c, s, e in actions:
        lo, hi = int(s) + 1, min(int(e), num_frames)
        if hi > lo:
            out.append((int(c), lo, hi))
    return out


def tsu_triplet(url: str, ann: dict | None, splits: list[str], classes: Sequence[str],
                fps: float = 25.0) -> Triplet:
    """One video's LCR-Net JSON + its annotation -> untrimmed triplet (segments in its json)."""
    vid = video_id(url)
    kp, score, kp3 = read_lcrnet(url)
    t = kp.shape[1]
    p, tk, c = (int(x) for x in _VID.search(vid).groups())  # type: ignore[union-attr]
    extra = {"frame_dir": vid, "format": "tsu", "benchmark": "tsu",
             "img_shape": [480, 640], "original_shape": [480, 640],
             "ids": {"subject": p, "take": tk, "camera": c}, "splits": splits,
             "classes": list(classes),
             "segments": [list(s) for s in frame_segments((ann or {}).get("actions", []), t)],
             "duration": None if ann is None else int(ann["duration"])}
    return make_triplet(f"tsu://{vid}", kp, score, "lcrnet13", fps, None, kp3, extra, origin=url)


def import_tsu(paths: Sequence[str], out_root: str, annotations: Sequence[str] = (),
               classes: str | None = None, fps: float = 25.0, samples_per_shard: int = 1000,
               overwrite: bool = False, **_: Any) -> dict[str, Any]:
    """Import TSU LCR-Net JSONs with the CS / CV annotation JSONs (``annotations``)."""
    if not annotations:
        raise DataError("tsu needs --annotations smarthome_CS_51.json [smarthome_CV_51.json]")
    names = read_class_list(classes) if classes else list(CLASSES)
    videos, member = read_annotations(annotations, len(names))
    book = SplitBook(sorted({s for v in member.values() for s in v}))
    mismatched: list[str] = []

    def gen() -> Iterator[Triplet]:
        for url in input_files(paths, ("*.json",)):
            vid = video_id(url)
            if vid not in videos:
                book.drop("video without annotation")
                continue
            with naming(url):
                t = tsu_triplet(url, videos[vid], member[vid], names, fps)
            if t.meta["duration"] != t.keypoint.shape[1]:
                mismatched.append(vid)
            yield t

    info = {"format": "tsu", "layout": "lcrnet13", "classes": names, "untrimmed": True}
    summary = write_benchmark(out_root, gen(), book, info, samples_per_shard, overwrite, paths)
    return {**summary, "duration_mismatch": mismatched}
