"""Importers of existing skeleton data into skeleton-only triplet shards.

Supported: pyskl / mmaction2 PoseDataset pickles, NTU RGB+D ``.skeleton`` text files and
``(C, T, V, M)`` npy, Kinect v2 CSV (``name,x,y,z,state``, 25 lines per frame, as FallFree) and
FSD-10 ``(3, T, 25, M)`` npy (x, y, confidence in OpenPose BODY_25). The caption comes from the
label through a template; no video or text embedding exists, so ``has_video`` / ``has_text`` are
false in each sample's json.

Every import is a transaction (:mod:`tmor.shards.transaction`): nothing under the root changes
unless every input was read and passed the checks of :mod:`tmor.shards.checks`; an import that
yields no sample is an error. Pickles are read without running code (:mod:`tmor.safe_pickle`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tmor import fsio
from tmor.manifests.keys import sample_key
from tmor.safe_pickle import load_data_pickle
from tmor.shards.checks import (
    DataError,
    UniqueNames,
    check_allocation,
    check_class_id,
    check_declared_count,
    check_frame_count,
    check_skeleton,
    naming,
    numeric,
    read_input,
)
from tmor.shards.codec import Triplet
from tmor.shards.writer import write_triplet_shards
from tmor.skeleton.npz import load_npy

TEMPLATE = "a person {label}."

NTU_CLASSES = [
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe",
    "wear on glasses", "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up",
    "hand waving", "kicking something", "reach into pocket", "hopping (one foot jumping)",
    "jump up", "make a phone call/answer phone", "playing with phone/tablet",
    "typing on a keyboard", "pointing to something with finger", "taking a selfie",
    "check time (from watch)", "rub two hands together", "nod head/bow", "shake head",
    "wipe face", "salute", "put the palms together", "cross hands in front (say stop)",
    "sneeze/cough", "staggering", "falling", "touch head (headache)",
    "touch chest (stomachache/heart pain)", "touch back (backache)", "touch neck (neckache)",
    "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person", "kicking other person", "pushing other person",
    "pat on back of other person", "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
]

KINECT_JOINTS = [
    "SpineBase", "SpineMid", "Neck", "Head", "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight", "HipLeft", "KneeLeft", "AnkleLeft",
    "FootLeft", "HipRight", "KneeRight", "AnkleRight", "FootRight", "SpineShoulder",
    "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
]
KINECT_STATE_SCORE = {"TRACKED": 1.0, "INFERRED": 0.5, "NOT_TRACKED": 0.0}


def caption_for(label: str | None, template: str = TEMPLATE) -> str:
    return template.format(label=label) if label else ""


def make_triplet(
    source: str,
    keypoint: np.ndarray,
    keypoint_score: np.ndarray,
    layout: str,
    fps: float,
    label: str | None = None,
    keypoint_3d: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
    template: str = TEMPLATE,
    origin: str = "",
) -> Triplet:
    """A skeleton-only triplet (no video / text embedding) keyed by its source; its arrays are
    checked at the door (:func:`tmor.shards.checks.check_skeleton`)."""
    name = str((extra or {}).get("frame_dir", source))
    keypoint = numeric(keypoint, f"{name}: keypoint")
    keypoint_score = numeric(keypoint_score, f"{name}: keypoint_score")
    if keypoint_3d is not None:
        keypoint_3d = numeric(keypoint_3d, f"{name}: keypoint_3d")
    check_skeleton(name, keypoint, keypoint_score, keypoint_3d)
    if not 0 < float(fps) < float("inf"):
        raise DataError(f"{name}: fps {fps}, expected a positive number")
    meta: dict[str, Any] = {
        "source": source, "start": None, "end": None, "label": label,
        "frames": int(keypoint.shape[1]), "persons": int(keypoint.shape[0]),
        "seconds": float(keypoint.shape[1] / fps) if fps else None, "imported": True,
    }
    meta.update(extra or {})
    return Triplet(
        key=sample_key(source, None, None), keypoint=keypoint, keypoint_score=keypoint_score,
        layout=layout, fps=float(fps), keypoint_3d=keypoint_3d,
        caption=caption_for(label, template), meta=meta, origin=origin or source,
    )


def _trim(
    kp3: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drop all-zero persons and trailing all-zero frames (NTU pads to 300 frames, 2 persons)."""
    present = np.abs(kp3).reshape(kp3.shape[0], -1).sum(axis=1) > 0
    if present.any():
        kp3, score = kp3[present], score[present]
    frames = np.flatnonzero(np.abs(kp3).sum(axis=(0, 2, 3)) > 0)
    end = int(frames[-1]) + 1 if frames.size else kp3.shape[1]
    return kp3[:, :end], score[:, :end]


def read_number_table(url: str, width_ok: Any, expected: str, dtype: Any = np.float64
                      ) -> np.ndarray:
    """A whitespace-separated text table of numbers, a row per non-empty line -> (rows, width)
    ``dtype``; every row's length must pass ``width_ok(n)`` and be the same (``expected`` says
    what was expected in the error)."""
    rows = [r.split() for r in read_input(url).decode("utf-8").splitlines() if r.strip()]
    if not rows:
        raise DataError(f"{url}: no rows of numbers (empty file)")
    widths = {len(r) for r in rows}
    if len(widths) > 1 or not all(width_ok(n) for n in widths):
        raise DataError(f"{url}: rows of {sorted(widths)} values, expected {expected}")
    return np.asarray(rows, dtype).reshape(len(rows), -1)


# ---- pyskl / mmaction2 -------------------------------------------------------------------------


def load_pyskl(url: str) -> dict[str, Any]:
    """A pyskl / mmaction2 pickle as {'split': {...}, 'annotations': [...]}; a bare list is
    taken as the annotations. Read without running code (only numpy arrays and plain values are
    admitted) and checked at the door (:func:`check_pyskl`)."""
    obj = load_data_pickle(url, read_input(url))
    if isinstance(obj, list):
        obj = {"split": {}, "annotations": obj}
    if not isinstance(obj, dict) or not isinstance(obj.get("annotations"), list):
        raise DataError(f"{url}: not a pyskl pickle (expected a dict with an 'annotations' "
                        f"list, got a {type(obj).__name__})")
    check_pyskl(obj, url)
    return obj


def check_pyskl(data: dict[str, Any], url: str) -> None:
    """Refuse a pyskl pickle whose annotations break the format: each a dict with a unique
    ``frame_dir`` (a string or an integer), a string or no ``label_name``, a finite numeric
    keypoint (M, T, V, 2|3) with at least one frame, keypoint_score (M, T, V), ``total_frames``
    equal to T, an integer ``label`` within the class list (``label_names``, else ``classes``;
    -1 only for untrimmed annotations with ``segments``) or a string, segments ``(class, start,
    end)`` with a class of ``classes`` (else ``label_names``) and 0 <= start < end, and
    ``img_shape`` / ``original_shape`` two numbers."""
    split = data.get("split") or {}
    if not isinstance(split, dict) or not all(isinstance(v, (list, tuple))
                                              for v in split.values()):
        raise DataError(f"{url}: 'split' must map split names to lists of frame_dir")
    for key in ("label_names", "classes"):
        if data.get(key) is not None and not isinstance(data[key], (list, tuple)):
            raise DataError(f"{url}: {key} is a {type(data[key]).__name__}, expected a list")
    labels = data.get("label_names") or data.get("classes")
    segment_classes = data.get("classes") or data.get("label_names")
    num_labels = len(labels) if labels else sys.maxsize
    num_segment_classes = len(segment_classes) if segment_classes else sys.maxsize
    names = UniqueNames()
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or a.get("frame_dir") is None:
            what = "without a frame_dir" if isinstance(a, dict) else f"a {type(a).__name__}"
            raise DataError(f"{url}: annotation {i} is {what}, expected a dict with frame_dir")
        name = str(a["frame_dir"])
        with naming(url, name):
            for key, types in (("frame_dir", (str, int, np.integer)), ("label_name", str)):
                v = a.get(key)
                if v is not None and (not isinstance(v, types) or isinstance(v, bool)):
                    raise DataError(f"{key} is a {type(v).__name__}, expected a string")
            names.add(name, f"annotation {i}")
            kp = numeric(a["keypoint"], "keypoint")
            score = a.get("keypoint_score")
            sc = numeric(score, "keypoint_score") if score is not None else kp[..., 0]
            check_skeleton("", kp, sc)
            if a.get("total_frames") is not None:
                check_frame_count("", "total_frames", a["total_frames"], kp.shape[1])
            segments = a.get("segments")
            label = a.get("label")
            if label is not None and not isinstance(label, str) and not (
                    segments is not None and label == -1):
                check_class_id(label, num_labels, "label")
            for c, start, end in [] if segments is None else segments:
                check_class_id(c, num_segment_classes, "segment")
                if not 0 <= int(start) < int(end):
                    raise DataError(f"segment ({c}, {start}, {end}): expected 0 <= start < end")
            for key in ("img_shape", "original_shape"):
                if a.get(key) is not None and numeric(a[key], key).shape != (2,):
                    raise DataError(f"{key} {a[key]!r}: expected (height, width)")


def check_annotation_layouts(anns: list[dict[str, Any]], layout: str, where: str) -> None:
    """ValueError when an annotation's keypoint joint count V differs from its layout's (the
    annotation's own ``layout`` key, else ``layout``); the message names the layouts that fit."""
    from tmor.skeleton.layouts import check_layout

    for a in anns:
        kp = np.asarray(a["keypoint"])
        with naming(where, str(a.get("frame_dir", "?"))):
            check_layout(str(a.get("layout", layout)), int(kp.shape[2]) if kp.ndim == 4 else -1,
                         f"{where}: {a.get('frame_dir', '?')}: keypoint {kp.shape}")


def triplet_from_annotation(
    ann: dict[str, Any], layout: str, fps: float, label_names: list[str] | None = None,
    template: str = TEMPLATE,
) -> Triplet:
    """One pyskl annotation -> triplet. keypoint (M,T,V,2) is 2D; (M,T,V,3) without a score is
    3D (NTU 3D annotations), with a score it is kept as 3D and its x, y as 2D."""
    kp = np.asarray(ann["keypoint"], np.float32)
    score = ann.get("keypoint_score")
    kp3 = None
    if kp.shape[-1] == 3:
        kp3, kp = kp, kp[..., :2]
        if score is None:
            score = (np.abs(kp3).sum(axis=-1) > 0).astype(np.float32)
    elif score is None:
        score = (np.abs(kp).sum(axis=-1) > 0).astype(np.float32)
    label = ann.get("label_name", ann.get("label"))
    if isinstance(label, (int, np.integer)) and label < 0:  # untrimmed: segments, no label
        label = None
    elif label_names is not None and isinstance(label, (int, np.integer)):
        label = label_names[int(label)]
    elif label is not None:
        label = str(label.item() if isinstance(label, np.generic) else label)
    extra = {
        k: ann[k] for k in ("img_shape", "original_shape", "label_id") if ann.get(k) is not None
    }
    extra = {k: list(v) if isinstance(v, tuple) else v for k, v in extra.items()}
    extra["frame_dir"] = str(ann["frame_dir"])
    return make_triplet(
        str(ann.get("source", ann["frame_dir"])), kp, score, ann.get("layout", layout),
        float(ann.get("fps", fps)), label, kp3, extra, template,
    )


def import_pyskl(
    pkl: str, out_root: str, layout: str = "coco17", fps: float = 30.0,
    label_names: list[str] | None = None, samples_per_shard: int = 1000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Import a pyskl pickle into ``<out_root>/triplets``; the split goes to the card.

    Every annotation's joint count is checked against its layout first: a mismatch is refused
    (ValueError naming the layouts that fit) before anything is written."""
    data = load_pyskl(pkl)
    check_annotation_layouts(data["annotations"], layout, pkl)
    label_names = label_names or data.get("label_names")

    def triplets() -> Iterator[Triplet]:
        for a in data["annotations"]:
            with naming(pkl):
                t = triplet_from_annotation(a, layout, fps, label_names)
            t.origin = pkl
            yield t

    split = {k: [str(x) for x in v] for k, v in (data.get("split") or {}).items()}
    return write_imported(out_root, triplets(), samples_per_shard, {"source": pkl, "split": split},
                          overwrite=overwrite, inputs=[pkl])


# ---- NTU RGB+D -----------------------------------------------------------------------------------


def ntu_label(path: str) -> str | None:
    """Class name from an NTU file name (``...A005...``), or None."""
    m = re.search(r"A(\d{3})", os.path.basename(path))
    if not m:
        return None
    a = int(m.group(1))
    return NTU_CLASSES[a - 1] if 1 <= a <= len(NTU_CLASSES) else f"A{a:03d}"


def read_ntu_skeleton(url: str, max_bodies: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An NTU ``.skeleton`` text file -> keypoint_3d (M, T, 25, 3), score (M, T, 25).

    Bodies are matched across frames by bodyID; joint tracking state 2 -> 1.0, 1 -> 0.5, 0 -> 0.
    """
    lines = read_input(url).decode("utf-8").split()
    pos = 0

    def take(n: int) -> list[str]:
        nonlocal pos
        if pos + n > len(lines):
            raise DataError(f"{url}: truncated .skeleton file")
        out = lines[pos:pos + n]
        pos += n
        return out

    frames = check_declared_count(url, "frame count", int(take(1)[0]), len(lines) - 1)
    bodies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for t in range(frames):
        for _ in range(int(take(1)[0])):
            body_id = take(10)[0]
            joints = int(take(1)[0])
            if joints < 1:
                raise DataError(f"{url}: joint count {joints}, expected at least 1")
            vals = np.array(take(12 * joints), np.float64).reshape(joints, 12)
            if body_id not in bodies:
                if len(bodies) >= max_bodies:
                    continue
                check_allocation(url, f"{frames} frames of {joints} joints",
                                 max_bodies * frames * joints * 4 * 4)
                bodies[body_id] = (
                    np.zeros((frames, joints, 3), np.float32),
                    np.zeros((frames, joints), np.float32),
                )
            xyz, sc = bodies[body_id]
            xyz[t] = vals[:, :3]
            sc[t] = np.select([vals[:, 11] >= 2, vals[:, 11] >= 1], [1.0, 0.5], 0.0)
    if not bodies:
        return np.zeros((1, frames, 25, 3), np.float32), np.zeros((1, frames, 25), np.float32)
    kp3 = np.stack([b[0] for b in bodies.values()])
    score = np.stack([b[1] for b in bodies.values()])
    return kp3, score


def read_ntu_npy(url: str) -> tuple[np.ndarray, np.ndarray]:
    """A ``(C=3, T, V, M)`` NTU npy -> keypoint_3d (M, T, V, 3), score (M, T, V) (1 where a
    joint is non-zero); zero persons and trailing zero frames are dropped."""
    a = load_npy(read_input(url))
    if a.ndim != 4 or a.shape[0] != 3:
        raise DataError(f"{url}: expected (C=3, T, V, M), got {a.shape}")
    kp3 = np.ascontiguousarray(a.transpose(3, 1, 2, 0)).astype(np.float32)
    score = (np.abs(kp3).sum(axis=-1) > 0).astype(np.float32)
    return _trim(kp3, score)


def ntu_triplet(url: str, label: str | None = None, fps: float = 30.0) -> Triplet:
    """One NTU file (``.skeleton`` or ``.npy``) -> triplet, layout ntu25, 2D = x, y of 3D."""
    if url.endswith(".skeleton"):
        kp3, score = read_ntu_skeleton(url)
        kp3, score = _trim(kp3, score)
    else:
        kp3, score = read_ntu_npy(url)
    return make_triplet(
        url, kp3[..., :2], score, "ntu25", fps, label or ntu_label(url), kp3, {"format": "ntu"}
    )


def import_ntu(
    paths: Iterable[str], out_root: str, fps: float = 30.0, samples_per_shard: int = 1000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Import NTU RGB+D ``.skeleton`` / ``(C,T,V,M)`` npy files into ``<out_root>/triplets``."""
    paths = [str(p) for p in paths]
    return write_imported(out_root, (read_triplet(p, "ntu", fps) for p in paths),
                          samples_per_shard, {"format": "ntu"}, overwrite, paths)


# ---- Kinect v2 CSV (FallFree) --------------------------------------------------------------------


def read_kinect_csv(url: str) -> tuple[np.ndarray, np.ndarray]:
    """``name,x,y,z,state`` lines, 25 per frame -> keypoint_3d (1, T, 25, 3), score (1, T, 25)."""
    rows = [r.split(",") for r in read_input(url).decode("utf-8").splitlines() if r.strip()]
    if not rows:
        raise DataError(f"{url}: no rows (empty file)")
    if len(rows) % 25:
        raise DataError(f"{url}: {len(rows)} lines is not a multiple of 25 joints")
    names = [r[0].strip() for r in rows[:25]]
    if names != KINECT_JOINTS:
        raise DataError(f"{url}: joint order {names[:3]}... is not Kinect v2's")
    t = len(rows) // 25
    xyz = np.array([[float(v) for v in r[1:4]] for r in rows], np.float32).reshape(1, t, 25, 3)
    states = [r[4].strip().upper() if len(r) > 4 else "TRACKED" for r in rows]
    score = np.array([KINECT_STATE_SCORE.get(s, 0.0) for s in states], np.float32)
    return xyz, score.reshape(1, t, 25)


def kinect_label(path: str) -> str | None:
    name = os.path.basename(path).lower()
    if name.startswith("non-fall") or name.startswith("nonfall"):
        return "walking without falling"
    if name.startswith("fall"):
        return "falling"
    return None


def kinect_triplet(url: str, label: str | None = None, fps: float = 30.0) -> Triplet:
    """One Kinect v2 CSV -> triplet, layout ntu25, 2D = x, y of 3D."""
    kp3, score = read_kinect_csv(url)
    return make_triplet(
        url, kp3[..., :2], score, "ntu25", fps, label or kinect_label(url), kp3,
        {"format": "kinect"},
    )


def import_kinect_csv(
    paths: Iterable[str], out_root: str, fps: float = 30.0, samples_per_shard: int = 1000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Import Kinect v2 CSV skeletons into ``<out_root>/triplets`` (layout ntu25)."""
    paths = [str(p) for p in paths]
    return write_imported(out_root, (read_triplet(p, "kinect_csv", fps) for p in paths),
                          samples_per_shard, {"format": "kinect_csv"}, overwrite, paths)


# ---- FSD-10 ------------------------------------------------------------------------------------


def read_fsd10_npy(url: str) -> tuple[np.ndarray, np.ndarray]:
    """``(3, T, 25, M)`` x, y, confidence -> keypoint (M, T, 25, 2), score (M, T, 25)."""
    a = load_npy(read_input(url))
    if a.ndim != 4 or a.shape[0] != 3:
        raise DataError(f"{url}: expected (C=3, T, V, M), got {a.shape}")
    a = np.ascontiguousarray(a.transpose(3, 1, 2, 0)).astype(np.float32)
    kp, score = a[..., :2], a[..., 2]
    kp, score = _trim(np.concatenate([kp, score[..., None]], -1), score)
    return np.ascontiguousarray(kp[..., :2]), score


def fsd10_triplet(url: str, label: str | None = None, fps: float = 30.0) -> Triplet:
    """One FSD-10 npy -> triplet, layout openpose25 (2D only)."""
    kp, score = read_fsd10_npy(url)
    m = re.search(r"class_?(\d+)", os.path.basename(url))
    label = label or (f"figure skating class {int(m.group(1))}" if m else None)
    return make_triplet(url, kp, score, "openpose25", fps, label, None, {"format": "fsd10"})


def import_fsd10(
    paths: Iterable[str], out_root: str, fps: float = 30.0, samples_per_shard: int = 1000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Import FSD-10 npy files into ``<out_root>/triplets`` (layout openpose25)."""
    paths = [str(p) for p in paths]
    return write_imported(out_root, (read_triplet(p, "fsd10", fps) for p in paths),
                          samples_per_shard, {"format": "fsd10"}, overwrite, paths)


# ---- any file ------------------------------------------------------------------------------------


def detect_format(path: str) -> str:
    """"pyskl" | "ntu" | "kinect_csv" | "fsd10" from the name (and an npy's confidence channel)."""
    name = os.path.basename(path).lower()
    if name.endswith((".pkl", ".pickle")):
        return "pyskl"
    if name.endswith(".skeleton"):
        return "ntu"
    if name.endswith(".csv"):
        return "kinect_csv"
    if name.endswith(".npy"):
        if "fsd" in name:
            return "fsd10"
        if "ntu" in name or re.search(r"a\d{3}", name):
            return "ntu"
        with naming(path):
            a = load_npy(read_input(path))
        conf = a[2] if a.ndim == 4 and a.shape[0] == 3 else None
        return "fsd10" if conf is not None and conf.min() >= 0 and conf.max() <= 1 else "ntu"
    raise DataError(f"{path}: unknown skeleton format")


FILE_READERS = {"ntu": ntu_triplet, "kinect_csv": kinect_triplet, "fsd10": fsd10_triplet}


def read_triplet(path: str, fmt: str | None = None, fps: float = 30.0) -> Triplet:
    """One NTU / Kinect CSV / FSD-10 skeleton file as a skeleton-only triplet; any problem with
    the file is one :class:`DataError` naming it."""
    f = fmt or detect_format(path)
    if f not in FILE_READERS:
        raise DataError(f"{path}: unknown format {f!r}; known: {', '.join(FILE_READERS)}")
    with naming(path):
        return FILE_READERS[f](path, fps=fps)


def import_files(
    paths: Iterable[str], out_root: str, fmt: str | None = None, samples_per_shard: int = 1000,
    overwrite: bool = False, **kwargs: Any,
) -> dict[str, Any]:
    """Import files of one or mixed formats into ``<out_root>/triplets``."""
    paths = [str(p) for p in paths]
    if any((fmt or detect_format(p)) == "pyskl" for p in paths):
        if len(paths) != 1:
            raise DataError("import one pyskl pickle at a time")
        return import_pyskl(paths[0], out_root, samples_per_shard=samples_per_shard,
                            overwrite=overwrite, **kwargs)

    fps = float(kwargs.get("fps") or 30.0)
    triplets = (read_triplet(p, fmt, fps) for p in paths)
    return write_imported(out_root, triplets, samples_per_shard, {"formats": fmt or "auto"},
                          overwrite=overwrite, inputs=paths)


def write_imported(
    out_root: str, triplets: Iterable[Triplet], samples_per_shard: int, info: dict[str, Any],
    overwrite: bool = False, inputs: Iterable[str] = (),
    late_info: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``triplets`` as the corpus of ``out_root`` (shards in ``triplets/``, the index, the
    card's ``import`` section) in one transaction (:func:`tmor.shards.transaction.staged_import`):
    a root holding a corpus is refused unless ``overwrite``, and any error, or no sample at all,
    leaves the root as it was. ``late_info()`` (e.g. drop counts) joins the card after the last
    sample; ``inputs`` name the inputs in errors."""
    from tmor.shards.card import update_corpus_card
    from tmor.shards.index import write_index
    from tmor.shards.transaction import staged_import
    from tmor.skeleton.layouts import check_layout

    if samples_per_shard < 1:
        raise DataError(f"samples per shard is {samples_per_shard}, must be at least 1")
    names, keys = UniqueNames(), UniqueNames("key")

    def checked(items: Iterable[Triplet]) -> Iterator[Triplet]:
        for t in items:
            name = str(t.meta.get("frame_dir", t.key))
            check_layout(t.layout, int(t.keypoint.shape[2]), f"{t.origin}: {name}: keypoint")
            names.add(name, t.origin or "?")
            keys.add(t.key, f"{t.origin}: {name}")
            yield t

    with staged_import(out_root, overwrite) as stage:
        shard_dir = fsio.join(stage, "triplets")
        urls = write_triplet_shards(shard_dir, checked(triplets), samples_per_shard)
        info = {**info, **(late_info() if late_info else {})}
        if not urls:
            where = ", ".join(inputs) or str(info.get("source") or info.get("format") or "input")
            dropped = "; ".join(f"{n} {why}" for why, n in (info.get("dropped") or {}).items())
            raise DataError(f"{where}: no sample to import"
                            + (f" (dropped: {dropped})" if dropped else ""))
        counts = write_index(shard_dir)
        summary = {**info, **counts, "shard_files": [Path(u).name for u in urls]}
        update_corpus_card(stage, "import", summary)
    return summary
