"""PKU-MMD (Kinect v2, NTU-25 joints, untrimmed; FORMATS.md section 5) -> untrimmed triplets.

Skeleton txt: one line per frame of 150 floats = 2 persons x 25 joints x (x, y, z) metres; person
2 all zeros when absent. Both person slots are kept (an absent person scores 0), every frame kept;
keypoint = x, y, keypoint_3d = x, y, z, layout ``ntu25``. Label files (same name, another
folder): ``label,start,end,confidence`` a line, labels 1..51 stored 0-based, ends inclusive
(stored end-exclusive). Split files ``cross-subject.txt`` / ``cross-view.txt`` (4 lines:
"Training videos:", ids, "Validataion videos:" (sic), ids) give ``xsub_train`` / ``xsub_test`` /
``xview_train`` / ``xview_test``. Ids from the name: Phase 1 ``0002-L`` (sequence, view),
Phase 2 ``A10N08-L``. Metric: event mAP at tIoU 0.1 / 0.3 / 0.5 (``tmor.train.metrics``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from tmor.shards.benchmarks.common import (
    SplitBook,
    input_files,
    read_class_list,
    read_lines,
    stem,
    write_benchmark,
)
from tmor.shards.checks import DataError, naming
from tmor.shards.codec import Triplet
from tmor.shards.import_untrimmed import read_label_file, read_pku_skeleton
from tmor.shards.importers import make_triplet

NUM_CLASSES = 51
_PHASE1 = re.compile(r"^(\d{4})-([LMR])$")
_PHASE2 = re.compile(r"^A(\d+)N(\d+)-([LMR])$")


def parse_id(name: str) -> dict[str, Any]:
    """Ids of a video id: Phase 1 {sequence, view}, Phase 2 {a, n, view}."""
    m = _PHASE1.match(name)
    if m:
        return {"phase": 1, "sequence": int(m.group(1)), "view": m.group(2)}
    m = _PHASE2.match(name)
    if m:
        return {"phase": 2, "a": int(m.group(1)), "n": int(m.group(2)), "view": m.group(3)}
    raise DataError(f"{name}: not a PKU-MMD video id (0002-L or A10N08-L)")


def read_split_file(url: str) -> tuple[list[str], list[str]]:
    """A 4-line split file -> (training ids, test ids)."""
    lines = read_lines(url)
    if len(lines) < 4 or not lines[0].lower().startswith("training"):
        raise DataError(f"{url}: expected 4 lines (Training videos:, ids, Validataion videos:,"
                         " ids)")

    def ids(line: str) -> list[str]:
        return [x.strip() for x in line.split(",") if x.strip()]

    return ids(lines[1]), ids(lines[3])


def protocol_of(url: str) -> str:
    name = os.path.basename(url).lower()
    if "subject" in name:
        return "xsub"
    if "view" in name:
        return "xview"
    raise DataError(f"{url}: not cross-subject*.txt / cross-view*.txt")


def read_splits(paths: Sequence[str]) -> dict[str, list[str]]:
    """Split files -> {xsub_train: ids, xsub_test: ids, ...}."""
    out: dict[str, list[str]] = {}
    for url in paths:
        train, test = read_split_file(url)
        p = protocol_of(url)
        out[f"{p}_train"], out[f"{p}_test"] = train, test
    return out


def pku_triplet(url: str, label: str | None, classes: Sequence[str], splits: list[str],
                fps: float = 30.0) -> Triplet:
    vid = stem(url)
    with naming(url):
        kp3, score = read_pku_skeleton(url, drop_empty=False)  # M = 2, as released
    segs = [] if label is None else read_label_file(label, label_offset=-1)
    bad = [c for c, _, _ in segs if not 0 <= c < len(classes)]
    if bad:
        raise DataError(f"{label}: labels {sorted({c + 1 for c in bad})} outside "
                        f"1..{len(classes)}")
    segs = [(c, max(s, 0), min(e, kp3.shape[1])) for c, s, e in segs]
    extra = {"frame_dir": vid, "format": "pku_mmd", "benchmark": "pku_mmd",
             "ids": parse_id(vid), "splits": splits, "classes": list(classes),
             "segments": [list(s) for s in segs if s[2] > s[1]]}
    with naming(url):
        return make_triplet(f"pku_mmd://{vid}", kp3[..., :2], score, "ntu25", fps, None, kp3,
                            extra, origin=url)


def import_pku_mmd(paths: Sequence[str], out_root: str, annotations: Sequence[str] = (),
                   splits: Sequence[str] = (), classes: str | None = None, fps: float = 30.0,
                   samples_per_shard: int = 1000, overwrite: bool = False,
                   **_: Any) -> dict[str, Any]:
    """Import PKU-MMD skeleton txts with their label files (``annotations``, paired by name;
    without them the sequences have no segments) and the split files (``splits``)."""
    labels = {stem(p): p for p in input_files(annotations, ("*.txt",))} if annotations else {}
    member: dict[str, list[str]] = {}
    split_files = input_files(splits, ("cross*.txt",)) if splits else []
    for split, ids in read_splits(split_files).items():
        for i in ids:
            member.setdefault(i, []).append(split)
    names = read_class_list(classes) if classes else [f"A{i:02d}" for i in range(1, 52)]
    book = SplitBook(sorted({s for v in member.values() for s in v}))

    def gen() -> Iterator[Triplet]:
        for url in input_files(paths, ("*.txt",)):
            vid = stem(url)
            if labels and vid not in labels:
                book.drop("skeleton without a label file")
                continue
            yield pku_triplet(url, labels.get(vid), names, member.get(vid, []), fps)

    info = {"format": "pku_mmd", "layout": "ntu25", "classes": names, "untrimmed": True}
    return write_benchmark(out_root, gen(), book, info, samples_per_shard, overwrite, paths)
