"""The one codec of skeleton arrays: ``.npy`` and ``pose.npz`` payloads.

``pose.npz`` bytes depend on the arrays only (fixed zip timestamps, fixed member order), so a rerun
of any stage writes byte-identical shards. Arrays follow docs/contracts.md: keypoint (M, T, V, C)
float32, keypoint_score (M, T, V) float32, optional keypoint_3d (M, T, V, 3) float32 metres, plus
0-d ``layout`` and ``fps``; the pose stage adds track ids, boxes and model fields.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)


def npy_bytes(array: np.ndarray) -> bytes:
    """``np.save`` into bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


_NPY_HEADER = re.compile(
    rb"^\{'descr': '([<>|=][a-zA-Z]\d*)', 'fortran_order': False, 'shape': \(([\d, ]*)\), \}"
)


def load_npy(data: bytes) -> np.ndarray:
    """An ``.npy`` payload -> array; the common C-order case skips np.load's header parsing."""
    if data[:6] == b"\x93NUMPY" and data[6:7] in (b"\x01", b"\x02"):
        if data[6] == 1:
            hlen, start = int.from_bytes(data[8:10], "little"), 10
        else:
            hlen, start = int.from_bytes(data[8:12], "little"), 12
        m = _NPY_HEADER.match(data[start:start + hlen])
        if m is not None and m.group(1)[1:2] != b"O":
            shape = tuple(int(x) for x in m.group(2).split(b",") if x.strip())
            dtype = np.dtype(m.group(1).decode())
            count = int(np.prod(shape)) if shape else 1
            arr = np.frombuffer(data, dtype, count=count, offset=start + hlen)
            return arr.reshape(shape).copy()  # writable, owns its memory
    return np.load(io.BytesIO(data), allow_pickle=False)


def npz_bytes(arrays: dict[str, Any], compress: bool = True) -> bytes:
    """An ``.npz`` whose bytes depend on the arrays only; readable by :func:`numpy.load`."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()


def encode_pose(
    keypoint: np.ndarray,
    keypoint_score: np.ndarray,
    layout: str,
    fps: float,
    keypoint_3d: np.ndarray | None = None,
    compress: bool = True,
) -> bytes:
    """The ``pose.npz`` member of a triplet."""
    arrays: dict[str, np.ndarray] = {
        "keypoint": np.asarray(keypoint, dtype=np.float32),
        "keypoint_score": np.asarray(keypoint_score, dtype=np.float32),
        "layout": np.asarray(str(layout)),
        "fps": np.asarray(float(fps), dtype=np.float32),
    }
    if keypoint_3d is not None:
        arrays["keypoint_3d"] = np.asarray(keypoint_3d, dtype=np.float32)
    return npz_bytes(arrays, compress)


#: the most a pose.npz may inflate to (all members together): an hour at 30 fps of 10 people with
#: 133 whole-body 3D joints is ~0.6 GB; a zip bomb stops here instead of filling the memory
MAX_POSE_BYTES = 1 << 30


def _read_bounded(z: zipfile.ZipFile, name: str, budget: int) -> bytes:
    """A member's bytes, refusing more than ``budget`` whatever its header declares."""
    if z.getinfo(name).file_size > budget:
        raise ValueError(f"pose.npz member {name} inflates to {z.getinfo(name).file_size} bytes, "
                         f"over the {budget} bytes left of the bound")
    with z.open(name) as f:
        raw = f.read(budget + 1)
    if len(raw) > budget:
        raise ValueError(f"pose.npz member {name} inflates past the {budget} bytes left of the "
                         "bound")
    return raw


def decode_pose(data: bytes, fields: tuple[str, ...] | None = None,
                max_bytes: int = MAX_POSE_BYTES) -> dict[str, Any]:
    """``pose.npz`` bytes -> {keypoint, keypoint_score, layout, fps, keypoint_3d?, ...}; 0-d
    arrays come back as Python scalars / strings. With ``fields``, only those arrays are read
    (the reader skips what it does not use). The members may inflate to ``max_bytes`` in all;
    more is a ValueError (a corrupt or hostile file)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            files = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            names = list(files) if fields is None else [k for k in fields if k in files]
            budget = max_bytes
            out: dict[str, Any] = {}
            for k in names:
                raw = _read_bounded(z, files[k], budget)
                budget -= len(raw)
                out[k] = load_npy(raw)
    except zipfile.BadZipFile as e:
        raise ValueError(f"pose.npz is not a valid npz: {e}") from e
    for k, val in list(out.items()):
        if isinstance(val, np.ndarray) and val.ndim == 0:
            out[k] = val.item()
    out["layout"] = str(out.get("layout", "coco17"))
    out["fps"] = float(out.get("fps", 30.0))
    return out
