"""The one codec of skeleton arrays: ``.npy`` and ``pose.npz`` payloads.

``pose.npz`` bytes depend on the arrays only (fixed zip timestamps, fixed member order), so a rerun
of any stage writes byte-identical shards. Arrays follow docs/contracts.md: keypoint (M, T, V, C)
float32, keypoint_score (M, T, V) float32, optional keypoint_3d (M, T, V, 3) float32 (in the layout
``layout_3d`` when the pose stage's lifter wrote one, see :func:`keypoint_3d_in_layout`), plus
0-d ``layout`` and ``fps``; the pose stage adds track ids, boxes and model fields.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zipfile
import zlib
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
    """An ``.npy`` payload -> array; the common C-order case skips np.load's header parsing.
    Object arrays are refused, and so is a header that declares more data than the payload
    holds (checked before anything is allocated)."""
    if data[:6] == b"\x93NUMPY" and data[6:7] in (b"\x01", b"\x02"):
        if data[6] == 1:
            hlen, start = int.from_bytes(data[8:10], "little"), 10
        else:
            hlen, start = int.from_bytes(data[8:12], "little"), 12
        m = _NPY_HEADER.match(data[start:start + hlen])
        if m is not None and m.group(1)[1:2] != b"O":
            shape = tuple(int(x) for x in m.group(2).split(b",") if x.strip())
            dtype = np.dtype(m.group(1).decode())
            count = _check_declared(shape, dtype, len(data) - start - hlen)
            arr = np.frombuffer(data, dtype, count=count, offset=start + hlen)
            return arr.reshape(shape).copy()  # writable, owns its memory
    _check_npy_size(data)
    return np.load(io.BytesIO(data), allow_pickle=False)


def _check_npy_size(data: bytes) -> None:
    """ValueError when an ``.npy`` header declares more bytes than follow it (np.load would
    allocate the declared size first)."""
    fmt = np.lib.format
    f = io.BytesIO(data)
    version = fmt.read_magic(f)
    shape, _, dtype = (fmt.read_array_header_1_0(f) if version == (1, 0)
                       else fmt.read_array_header_2_0(f))
    _check_declared(shape, dtype, len(data) - f.tell())


def _check_declared(shape: tuple[int, ...], dtype: np.dtype, available: int) -> int:
    """The element count of ``shape``; ValueError when its bytes (counted exactly, no integer
    overflow) exceed the ``available`` bytes after the header."""
    count = math.prod(shape)
    if count * dtype.itemsize > available:
        raise ValueError(f".npy declares {shape} {dtype} ({count * dtype.itemsize} bytes), "
                         f"holds {available}")
    return count


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
    compress: bool = False,
) -> bytes:
    """The ``pose.npz`` member of a triplet; stored uncompressed by default, so the reader
    slices the arrays out without an inflate (``compress=True``: deflated, ~10-30% smaller)."""
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


class InflateBoundError(ValueError):
    """A pose.npz whose members would inflate past the bound (a corrupt or hostile file)."""


def npz_members(data: bytes, max_bytes: int = MAX_POSE_BYTES) -> dict[str, bytes]:
    """The ``.npy`` payloads of an ``.npz`` by name (without ``.npy``), read from the zip's
    central directory: stored members are slices (no copy through :mod:`zipfile`), deflated ones
    (``np.savez_compressed``, older shards) one raw inflate each. Raises ValueError when the bytes
    are not a zip this reader understands; :func:`decode_pose` then falls back to :mod:`zipfile`.
    """
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if end < 0 or len(data) < end + 22:
        raise ValueError("no end of central directory")
    count, cd_size, cd_off = struct.unpack_from("<HII", data, end + 10)
    if cd_off == 0xFFFFFFFF or count == 0xFFFF:
        raise ValueError("zip64 central directory")
    out: dict[str, bytes] = {}
    budget = max_bytes
    pos = cd_off
    for _ in range(count):
        if data[pos:pos + 4] != b"PK\x01\x02":
            raise ValueError("bad central directory entry")
        method, crc, csize, usize, nlen, xlen, clen, local = struct.unpack_from(
            "<H4xIIIHHH8xI", data, pos + 10)
        name = data[pos + 46:pos + 46 + nlen].decode("utf-8")
        pos += 46 + nlen + xlen + clen
        if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF or local == 0xFFFFFFFF:
            raise ValueError("zip64 member sizes")
        if data[local:local + 4] != b"PK\x03\x04":
            raise ValueError("bad local header")
        lnlen, lxlen = struct.unpack_from("<HH", data, local + 26)
        start = local + 30 + lnlen + lxlen
        raw = data[start:start + csize]
        if len(raw) != csize:
            raise ValueError(f"member {name!r} is truncated")
        if method == 0:
            payload = raw
        elif method == 8:
            if usize > budget:
                raise InflateBoundError(f"pose.npz member {name!r} inflates to {usize} bytes, "
                                        f"over the {budget} bytes left of the bound")
            payload = zlib.decompressobj(-15).decompress(raw, usize + 1)  # more: a lie
        else:
            raise ValueError(f"member {name!r}: compression method {method}")
        if len(payload) > budget:
            raise InflateBoundError(f"pose.npz member {name!r} inflates past the bound")
        if len(payload) != usize or zlib.crc32(payload) != crc:
            raise ValueError(f"member {name!r}: size or CRC mismatch")
        budget -= len(payload)
        if name.endswith(".npy"):
            out[name[:-4]] = payload
    return out


def read_npz(data: bytes, fields: tuple[str, ...] | None = None,
             max_bytes: int = MAX_POSE_BYTES) -> dict[str, np.ndarray]:
    """The arrays of ``.npz`` bytes by name (only ``fields`` when given). Stored (uncompressed)
    members decode without a copy through :mod:`zipfile` or an inflate (:func:`npz_members`).
    The members may inflate to ``max_bytes`` in all; more is an :class:`InflateBoundError`, and
    a file that is not a readable npz a ValueError."""
    try:
        members = npz_members(data, max_bytes)
        names = list(members) if fields is None else [k for k in fields if k in members]
        return {k: load_npy(members[k]) for k in names}
    except InflateBoundError:
        raise
    except (ValueError, struct.error, zlib.error, UnicodeDecodeError):
        return _decode_pose_zipfile(data, fields, max_bytes)


def decode_pose(data: bytes, fields: tuple[str, ...] | None = None,
                max_bytes: int = MAX_POSE_BYTES) -> dict[str, Any]:
    """``pose.npz`` bytes -> {keypoint, keypoint_score, layout, fps, keypoint_3d?, ...}; 0-d
    arrays come back as Python scalars / strings. With ``fields``, only those arrays are read
    (the reader skips what it does not use). Bounded as :func:`read_npz`."""
    out: dict[str, Any] = read_npz(data, fields, max_bytes)
    for k, val in list(out.items()):
        if isinstance(val, np.ndarray) and val.ndim == 0:
            out[k] = val.item()
    out["layout"] = str(out.get("layout", "coco17"))
    out["fps"] = float(out.get("fps", 30.0))
    return out


def keypoint_3d_in_layout(pose: dict[str, Any]) -> np.ndarray | None:
    """A decoded pose's ``keypoint_3d`` in the layout of its ``keypoint``: converted from its
    ``layout_3d`` (MotionBERT writes h36m17) when that differs; None when it has no 3D."""
    k3 = pose.get("keypoint_3d")
    if k3 is None:
        return None
    src, dst = str(pose.get("layout_3d", pose["layout"])), str(pose["layout"])
    if src == dst:
        return np.asarray(k3, np.float32)
    from tmor.skeleton.layouts import convert

    return convert(np.asarray(k3, np.float32), None, src, dst)[0]


def _decode_pose_zipfile(data: bytes, fields: tuple[str, ...] | None,
                         max_bytes: int) -> dict[str, Any]:
    """The general path through :mod:`zipfile` (any zip numpy writes), bounded the same way."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            files = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            names = list(files) if fields is None else [k for k in fields if k in files]
            out: dict[str, Any] = {}
            budget = max_bytes
            for k in names:
                raw = _read_bounded(z, files[k], budget)
                budget -= len(raw)
                out[k] = load_npy(raw)
            return out
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
        raise ValueError(f"pose.npz is not a valid npz: {e}") from e


def _read_bounded(z: zipfile.ZipFile, name: str, budget: int) -> bytes:
    """A member's bytes, refusing more than ``budget`` whatever its header declares."""
    if z.getinfo(name).file_size > budget:
        raise InflateBoundError(f"pose.npz member {name} inflates to {z.getinfo(name).file_size} "
                                f"bytes, over the {budget} bytes left of the bound")
    with z.open(name) as f:  # a member longer than its header says fails zipfile's CRC check
        raw = f.read(min(z.getinfo(name).file_size, budget) + 1)
    if len(raw) > budget:
        raise InflateBoundError(f"pose.npz member {name} inflates past the {budget} bytes left "
                                "of the bound")
    return raw
