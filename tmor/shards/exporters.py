"""Exporters from triplet shards to the formats the field's tools read.

- pyskl / mmaction2 PoseDataset pickle: {'split': {...}, 'annotations': [{frame_dir,
  total_frames, img_shape, original_shape, label, keypoint (M,T,V,C), keypoint_score (M,T,V)}]};
  3D samples export keypoint_3d as keypoint (C=3), as pyskl's NTU 3D annotations do; untrimmed
  samples add ``segments`` and the pickle ``classes`` (the untrimmed pickle of
  :mod:`tmor.shards.import_untrimmed`).
- ST-GCN: data (N, C, T, V, M) float32 npy, zero-padded to the longest clip and the most persons,
  plus a label pickle (sample names, label ids) and the label names.

A sample's name (pyskl ``frame_dir``, ST-GCN sample name) is the one it was imported with, its key
only where it had none; two samples with one name are refused, not renamed.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np

from tmor import fsio
from tmor.shards.checks import naming
from tmor.shards.codec import Triplet, decode_triplet
from tmor.shards.index import shard_urls
from tmor.shards.tario import iter_tar_samples


def iter_triplets(root: str) -> Iterator[Triplet]:
    """Every triplet of ``<root>/triplets`` (or of ``root`` itself when it holds the tars)."""
    shard_dir = fsio.join(root, "triplets")
    urls = shard_urls(shard_dir) or shard_urls(root)
    for url in urls:
        with fsio.open_url(url, "rb") as f:
            for key, members in iter_tar_samples(f, url):
                with naming(url, key):  # a malformed or hostile member: one line naming it
                    t = decode_triplet(key, members)
                yield t


def label_vocabulary(triplets: list[Triplet]) -> list[str]:
    """Sorted distinct labels (samples without one are left out)."""
    return sorted({t.label for t in triplets if t.label is not None})


def sample_names(triplets: list[Triplet], where: str) -> list[str]:
    """Each sample's name: the name it was imported with (``meta["frame_dir"]``), else its key.
    Two samples with one name are an error (ValueError naming both), never a rename."""
    names = [str(t.meta.get("frame_dir") or t.key) for t in triplets]
    first: dict[str, str] = {}
    for t, name in zip(triplets, names, strict=True):
        if name in first:
            raise ValueError(f"{where}: samples {first[name]} and {t.key} are both named "
                             f"{name!r}; names must be unique to export")
        first[name] = t.key
    return names


def to_pyskl_annotation(t: Triplet, label_id: int | None = None,
                        name: str | None = None) -> dict[str, Any]:
    kp = t.keypoint_3d if t.keypoint_3d is not None else t.keypoint
    shape = tuple(t.meta.get("img_shape") or (0, 0))
    ann: dict[str, Any] = {
        "frame_dir": name or t.key,
        "total_frames": int(kp.shape[1]),
        "img_shape": shape,
        "original_shape": tuple(t.meta.get("original_shape") or shape),
        "label": label_id if label_id is not None else t.label,
        "label_name": t.label,
        "keypoint": np.asarray(kp, np.float32),
        "keypoint_score": np.asarray(t.keypoint_score, np.float32),
        "layout": t.layout,
        "fps": t.fps,
        "source": t.meta.get("source", t.key),
    }
    if t.meta.get("segments") is not None:  # untrimmed: (class_id, start, end) frames
        ann["segments"] = [tuple(int(v) for v in seg) for seg in t.meta["segments"]]
    return ann


def export_pyskl(root: str, out_pkl: str, split: dict[str, list[str]] | None = None) -> dict:
    """Write the shards of ``root`` as a pyskl pickle; labels become ids into the sorted label
    names (stored as ``'label_names'``). ``frame_dir`` is the name each sample was imported
    with (:func:`sample_names`). Split defaults to the card's import split (in those names) or
    {'all': every frame_dir}."""
    from tmor.shards.card import read_corpus_card

    triplets = list(iter_triplets(root))
    frame_dirs = sample_names(triplets, root)
    names = label_vocabulary(triplets)
    ids = {n: i for i, n in enumerate(names)}
    # unlabeled: -1 for untrimmed samples (their segments hold the classes), else None
    anns = [to_pyskl_annotation(t, ids.get(t.label, -1 if t.meta.get("segments") is not None
                                           else None), d)
            for t, d in zip(triplets, frame_dirs, strict=True)]
    if split is None:
        split = read_corpus_card(root).get("import", {}).get("split") or {}
        name_of = {t.key: d for t, d in zip(triplets, frame_dirs, strict=True)}
        name_of.update({d: d for d in frame_dirs})  # a listed name stays; a listed key is named
        split = {k: [name_of[d] for d in map(str, v) if d in name_of] for k, v in split.items()}
        split = split or {"all": [a["frame_dir"] for a in anns]}
    data: dict[str, Any] = {"split": split, "annotations": anns, "label_names": names}
    seg_classes = next((t.meta["classes"] for t in triplets if t.meta.get("classes")), None)
    if seg_classes:  # untrimmed corpora: the names of the segments' class ids
        data["classes"] = list(seg_classes)
    fsio.write_bytes(out_pkl, pickle.dumps(data, protocol=4))
    return {"samples": len(anns), "labels": len(names), "split": {k: len(v) for k, v in
                                                                   split.items()}}


def export_stgcn(
    root: str, out_npy: str, out_label_pkl: str, channels: int = 3, max_frames: int | None = None,
    max_persons: int = 2, layout: str | None = None,
) -> dict[str, Any]:
    """Write (N, C, T, V, M) float32 data and (sample names, label ids) as ST-GCN's feeder reads.

    channels 3: keypoint_3d when present, else x, y, score (OpenPose / Kinetics-skeleton style);
    channels 2: x, y. T is the longest clip (or ``max_frames``, cutting longer clips). Samples
    of several layouts need ``layout``, to which all are converted. The npy is written one
    sample at a time, so memory holds one (C, T, V, M) block, not the whole array."""
    from tmor.skeleton.transforms import convert_layout

    triplets = list(iter_triplets(root))
    if not triplets:
        raise ValueError(f"{root}: no triplet samples to export")
    sample_dirs = sample_names(triplets, root)  # a name collision stops before any file
    layouts = {t.layout for t in triplets}
    if layout is None and len(layouts) > 1:
        raise ValueError(f"{root}: samples have layouts {sorted(layouts)}: choose one (layout=)")
    if layout is not None:
        for t in triplets:
            k3 = t.keypoint_3d
            t.keypoint, t.keypoint_score = convert_layout(
                t.keypoint, t.keypoint_score, t.layout, layout)
            if k3 is not None:
                t.keypoint_3d = convert_layout(k3, np.ones(k3.shape[:3], np.float32),
                                               t.layout, layout)[0]
            t.layout = layout
    names = label_vocabulary(triplets)
    ids = {n: i for i, n in enumerate(names)}
    t_max = max(t.keypoint.shape[1] for t in triplets)
    t_max = min(t_max, max_frames) if max_frames else t_max
    v = triplets[0].keypoint.shape[2]
    shape = (len(triplets), channels, t_max, v, max_persons)
    with fsio.atomic_open(out_npy) as f:  # one sample's block at a time: (C, T, V, M) each
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                "fortran_order": False, "shape": shape})
        for t in triplets:
            if channels == 3 and t.keypoint_3d is not None:
                arr = t.keypoint_3d
            elif channels == 3:
                arr = np.concatenate([t.keypoint[..., :2], t.keypoint_score[..., None]], -1)
            else:
                arr = t.keypoint[..., :2]
            arr = arr[:max_persons, :t_max]  # (M, T, V, C)
            block = np.zeros(shape[1:], np.float32)
            block[:, : arr.shape[1], :, : arr.shape[0]] = arr.transpose(3, 1, 2, 0)
            f.write(block.tobytes())
    labels = [ids.get(t.label, -1) for t in triplets]
    fsio.write_bytes(out_label_pkl, pickle.dumps((sample_dirs, labels, names), protocol=4))
    return {"samples": len(triplets), "shape": list(shape), "labels": len(names)}
