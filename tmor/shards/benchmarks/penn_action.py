"""Penn Action ``labels/NNNN.mat`` (FORMATS.md section 3) -> triplets in the ``penn13`` layout.

Per file: ``x``, ``y`` (T, 13) pixels, ``visibility`` (T, 13) as the joint score (0 also where
x = y = 0; the release's 26 such entries are all invisible anyway), ``action`` (the
class string of the .mat file, e.g. ``pullup``; the README spells some differently), ``train``
(1 = train, -1 = test: the official split ``train`` / ``test``), ``dimensions`` [H, W, T] (the
frame size, stored as ``img_shape``), ``pose`` (coarse view, an id). Every frame is kept;
``nframes`` and ``dimensions[2]`` must equal the frames of x / y. A file's compressed variables may
inflate to :data:`~tmor.shards.checks.MAX_INPUT_BYTES` in all (counted before scipy reads them).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tmor.shards.benchmarks.common import SplitBook, input_files, stem, write_benchmark
from tmor.shards.checks import (
    MAX_INPUT_BYTES,
    DataError,
    check_frame_count,
    describe,
    names_file,
    naming,
    read_input,
)
from tmor.shards.codec import Triplet
from tmor.shards.importers import make_triplet

#: the 15 class strings of the .mat files, sorted (= label ids)
CLASSES = (
    "baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
    "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar",
    "tennis_forehand", "tennis_serve",
)
FIELDS = ("action", "pose", "x", "y", "visibility", "train", "dimensions", "nframes")
SPLITS = ("train", "test")


def _str(v: Any) -> str:
    return str(np.asarray(v).reshape(-1)[0])


def check_mat_inflation(data: bytes, limit: int = MAX_INPUT_BYTES) -> None:
    """Refuse a MAT v5 file whose variables take more than ``limit`` bytes once inflated,
    counting the compressed ones in 64 KiB steps (nothing is kept). Other versions pass (scipy
    reads v4 uncompressed and refuses v7.3)."""
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        return
    order = "<" if data[126:128] == b"IM" else ">"
    pos, total, step = 128, 0, 1 << 16
    while pos + 8 <= len(data):
        kind, nbytes = struct.unpack_from(order + "II", data, pos)
        if kind >> 16:  # small data element: tag and data in 8 bytes
            pos += 8
            continue
        body = data[pos + 8:pos + 8 + nbytes]
        if kind == 15:  # miCOMPRESSED
            inflate, chunk = zlib.decompressobj(), body
            while True:
                out = inflate.decompress(chunk, step)
                total += len(out)
                if total > limit:
                    raise DataError(f"variables inflate past {limit} bytes (a corrupt or "
                                    "hostile .mat)")
                chunk = inflate.unconsumed_tail
                if not chunk and len(out) < step:
                    break
            pos += 8 + nbytes
        else:
            total += nbytes
            pos += 8 + nbytes + (-nbytes % 8)
        if total > limit:
            raise DataError(f"variables of {total} bytes, over the {limit}-byte limit")


@names_file
def read_penn_mat(url: str) -> dict[str, Any]:
    """One .mat file -> {keypoint (1, T, 13, 2), score (1, T, 13), action, view, train (bool),
    img_shape (H, W), nframes}."""
    from scipy.io import loadmat

    data = read_input(url)
    check_mat_inflation(data)
    try:
        m = loadmat(io.BytesIO(data), variable_names=FIELDS)
    except Exception as e:  # noqa: BLE001 - scipy's many ways to say the file is not a .mat
        raise DataError(f"{url}: not a readable MAT file ({describe(e)})") from None
    x, y = np.asarray(m["x"], np.float32), np.asarray(m["y"], np.float32)
    vis = np.asarray(m["visibility"], np.float32) * ((x != 0) | (y != 0))
    if x.ndim != 2 or x.shape[1] != 13 or y.shape != x.shape or vis.shape != x.shape:
        raise DataError(f"{url}: x/y/visibility {x.shape}/{y.shape}/{vis.shape}, "
                         "expected (T, 13)")
    dims = np.asarray(m["dimensions"]).reshape(-1)
    if dims.size != 3:
        raise DataError(f"{url}: dimensions {dims.tolist()}, expected [H, W, T]")
    nframes = int(np.asarray(m["nframes"]).reshape(-1)[0])
    check_frame_count(url, "nframes", nframes, x.shape[0])
    check_frame_count(url, "dimensions[2]", int(dims[2]), x.shape[0])
    train = int(np.asarray(m["train"]).reshape(-1)[0])
    if train not in (1, -1):
        raise DataError(f"{url}: train flag {train}, expected 1 or -1")
    return {
        "keypoint": np.stack([x, y], -1)[None], "score": vis[None],
        "action": _str(m["action"]), "view": _str(m["pose"]), "train": train == 1,
        "img_shape": (int(dims[0]), int(dims[1])), "nframes": nframes,
    }


def penn_triplet(url: str, fps: float = 30.0) -> Triplet:
    """One .mat file -> a triplet named by its 4-digit video id."""
    r = read_penn_mat(url)
    vid = stem(url)
    if r["action"] not in CLASSES:
        raise DataError(f"{url}: class {r['action']!r} is not one of Penn Action's 15")
    split = "train" if r["train"] else "test"
    extra = {
        "frame_dir": vid, "format": "penn_action", "benchmark": "penn_action",
        "img_shape": list(r["img_shape"]), "original_shape": list(r["img_shape"]),
        "label_id": CLASSES.index(r["action"]), "ids": {"video": vid, "view": r["view"]},
        "nframes": r["nframes"], "splits": [split],
    }
    with naming(url):
        return make_triplet(f"penn_action://{vid}", r["keypoint"], r["score"], "penn13", fps,
                            r["action"], None, extra, origin=url)


def iter_penn(paths: Sequence[str], fps: float = 30.0) -> Iterator[Triplet]:
    for url in input_files(paths, ("*.mat",)):
        yield penn_triplet(url, fps)


def import_penn_action(paths: Sequence[str], out_root: str, fps: float = 30.0,
                       samples_per_shard: int = 1000, overwrite: bool = False,
                       **_: Any) -> dict[str, Any]:
    """Import Penn Action .mat files (or the ``labels/`` folder) into ``<out_root>/triplets``."""
    book = SplitBook(SPLITS)
    info = {"format": "penn_action", "layout": "penn13", "classes": list(CLASSES)}
    return write_benchmark(out_root, iter_penn(paths, fps), book, info, samples_per_shard,
                           overwrite, paths)
