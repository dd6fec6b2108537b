"""Toyota Smarthome (trimmed, 31 classes; FORMATS.md section 1) -> triplets in ``lcrnet13``.

Skeletons: one LCR-Net JSON per clip, v1.1 (``<Activity>_pXX_rXX_vXX_cXX.json``) or v1.2
(``..._pose3d.json``); 2D pixels as keypoint, 3D metres as keypoint_3d, up to 2 people. Ids come
from the file name: subject ``p``, take ``r``, view code ``v``, camera ``c``.

Splits, named ``cs_train`` / ``cs_val`` / ``cs_test``, ``cv1_*``, ``cv2_*``: from the official
lists (``{train,validation,test}_{CS,CV1,CV2}.txt``) when given, else from the ids by the same
rule (CS by subject, CV by camera, CV only for its 19 classes; never UNIK's subject-for-camera
CV2 bug). Clips of classes outside the 31 (``Pour.Fromcup``) are dropped and counted.
Metric: mean per-class accuracy over the classes of the protocol (31 for CS, 19 for CV).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from tmor.shards.benchmarks.common import (
    SplitBook,
    input_files,
    read_lines,
    stem,
    write_benchmark,
)
from tmor.shards.benchmarks.lcrnet import read_lcrnet
from tmor.shards.checks import DataError, naming
from tmor.shards.codec import Triplet
from tmor.shards.importers import make_triplet

#: UNIK's 0-based order (Usetelephone before Usetablet); labels are stored by name
CLASSES = (
    "Cook.Cleandishes", "Cook.Cleanup", "Cook.Cut", "Cook.Stir", "Cook.Usestove", "Cutbread",
    "Drink.Frombottle", "Drink.Fromcan", "Drink.Fromcup", "Drink.Fromglass", "Eat.Attable",
    "Eat.Snack", "Enter", "Getup", "Laydown", "Leave", "Makecoffee.Pourgrains",
    "Makecoffee.Pourwater", "Maketea.Boilwater", "Maketea.Insertteabag", "Pour.Frombottle",
    "Pour.Fromcan", "Pour.Fromkettle", "Readbook", "Sitdown", "Takepills", "Uselaptop",
    "Usetelephone", "Usetablet", "Walk", "WatchTV",
)
CV_CLASSES = (
    "Cutbread", "Drink.Frombottle", "Drink.Fromcan", "Drink.Fromcup", "Drink.Fromglass",
    "Eat.Attable", "Eat.Snack", "Enter", "Getup", "Leave", "Pour.Frombottle", "Pour.Fromcan",
    "Readbook", "Sitdown", "Takepills", "Uselaptop", "Usetablet", "Usetelephone", "Walk",
)
CS = {"train": {3, 4, 6, 7, 9, 12, 13, 15, 17}, "val": {19, 25},
      "test": {2, 10, 11, 14, 16, 18, 20}}  # subjects
CV1 = {"train": {1}, "val": {5}, "test": {2}}  # cameras
CV2 = {"train": {1, 3, 4, 6, 7}, "val": {5}, "test": {2}}
PROTOCOLS = {"cs": ("subject", CS), "cv1": ("camera", CV1), "cv2": ("camera", CV2)}
SPLITS = tuple(f"{p}_{s}" for p in PROTOCOLS for s in ("train", "val", "test"))
_NAME = re.compile(r"^(?P<activity>[^_]+)_p(?P<subject>\d+)_r(?P<take>\d+)_v(?P<view>\d+)"
                   r"_c(?P<camera>\d+)")
_PART = {"train": "train", "validation": "val", "test": "test"}


def parse_name(name: str) -> dict[str, Any]:
    """``Cook.Cleandishes_p02_r00_v02_c03[...]`` -> {activity, subject, take, view, camera}."""
    m = _NAME.match(os.path.basename(name))
    if not m:
        raise DataError(f"{name}: not a Toyota Smarthome clip name (<Activity>_pXX_rXX_vXX_cXX)")
    d = m.groupdict()
    return {"activity": d["activity"], **{k: int(d[k]) for k in ("subject", "take", "view",
                                                                   "camera")}}


def clip_name(path: str) -> str:
    """The clip id of a skeleton / video / split-list entry (no extension, no ``_pose3d``)."""
    return stem(path, ("_pose3d",))


def splits_from_ids(ids: dict[str, Any]) -> list[str]:
    """The official splits of a clip by its ids (CV splits only for the 19 CV classes)."""
    out = []
    for proto, (key, parts) in PROTOCOLS.items():
        if proto != "cs" and ids["activity"] not in CV_CLASSES:
            continue
        out += [f"{proto}_{part}" for part, vals in parts.items() if ids[key] in vals]
    return out


def read_split_lists(paths: Sequence[str]) -> dict[str, list[str]]:
    """The official lists (a folder or the ``{train,validation,test}_{CS,CV1,CV2}.txt`` files)
    -> {``cs_train``: [clip names], ...} in file order, every listed name (Pour.Fromcup too)."""
    out: dict[str, list[str]] = {}
    for url in input_files(paths, ("*_CS.txt", "*_CV1.txt", "*_CV2.txt")):
        part, _, proto = stem(url).partition("_")
        if part not in _PART or proto.upper() not in ("CS", "CV1", "CV2"):
            raise DataError(f"{url}: not an official split list name ({{train,validation,test}}"
                            "_{CS,CV1,CV2}.txt)")
        names = []
        for i, line in enumerate(read_lines(url)):
            with naming(url, f"entry {i + 1}"):
                names.append(clip_name(line))
                parse_name(names[-1])
        out[f"{proto.lower()}_{_PART[part]}"] = names
    return out


def smarthome_triplet(url: str, membership: dict[str, list[str]] | None, fps: float = 30.0,
                      max_persons: int = 2) -> Triplet:
    """One clip's LCR-Net JSON -> triplet (keypoint 2D pixels, keypoint_3d metres)."""
    name = clip_name(url)
    ids = parse_name(name)
    kp, score, kp3 = read_lcrnet(url, max_persons)
    splits = (splits_from_ids(ids) if membership is None
              else [s for s, names in membership.items() if name in names])
    extra = {"frame_dir": name, "format": "smarthome", "benchmark": "smarthome",
             "img_shape": [480, 640], "original_shape": [480, 640],
             "label_id": CLASSES.index(ids["activity"]),
             "ids": {k: ids[k] for k in ("subject", "take", "view", "camera")},
             "release": "v1.2" if url.endswith("_pose3d.json") else "v1.1", "splits": splits}
    return make_triplet(f"smarthome://{name}", kp, score, "lcrnet13", fps, ids["activity"], kp3,
                        extra, origin=url)


def import_smarthome(paths: Sequence[str], out_root: str, splits: Sequence[str] = (),
                     fps: float = 30.0, samples_per_shard: int = 1000, overwrite: bool = False,
                     **_: Any) -> dict[str, Any]:
    """Import Smarthome LCR-Net JSONs (files or a folder); ``splits``: the official list files
    or their folder (without them membership follows the ids)."""
    lists = read_split_lists(splits) if splits else None
    membership = {k: set(v) for k, v in lists.items()} if lists else None
    book = SplitBook(SPLITS)

    def gen() -> Iterator[Triplet]:
        for url in input_files(paths, ("*.json",)):
            with naming(url):
                activity = parse_name(clip_name(url))["activity"]
                t = smarthome_triplet(url, membership, fps) if activity in CLASSES else None
            if t is None:
                book.drop(f"class {activity} outside the 31")
                continue
            yield t

    info = {"format": "smarthome", "layout": "lcrnet13", "classes": list(CLASSES),
            "split_classes": {s: list(CV_CLASSES if s.startswith("cv") else CLASSES)
                              for s in SPLITS},
            "split_source": "official lists" if lists else "ids"}
    return write_benchmark(out_root, gen(), book, info, samples_per_shard, overwrite, paths)
