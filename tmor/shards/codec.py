"""Encode and decode one triplet sample: pose.npz, video.npy, text.npy, txt and json members.

Arrays follow docs/contracts.md: keypoint (M, T, V, C) float32, keypoint_score (M, T, V) float32,
optional keypoint_3d (M, T, V, 3) float32 metres, embeddings (D,) float16.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: members every triplet sample carries; video.npy may be absent ("has_video": false)
REQUIRED_MEMBERS = ("pose.npz", "text.npy", "txt", "json")
OPTIONAL_MEMBERS = ("video.npy",)


@dataclass
class Triplet:
    """One decoded triplet sample."""

    key: str
    keypoint: np.ndarray  # (M, T, V, C) float32
    keypoint_score: np.ndarray  # (M, T, V) float32
    layout: str
    fps: float
    keypoint_3d: np.ndarray | None = None  # (M, T, V, 3) float32
    video: np.ndarray | None = None  # (Dv,) float16
    text: np.ndarray | None = None  # (Dt,) float16
    caption: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        return self.meta.get("label")


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
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def decode_pose(data: bytes, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``pose.npz`` bytes -> {keypoint, keypoint_score, layout, fps, keypoint_3d?, ...}; with
    ``fields``, only those arrays are read (the reader skips what it does not use)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            files = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
            names = list(files) if fields is None else [k for k in fields if k in files]
            out: dict[str, Any] = {k: load_npy(z.read(files[k])) for k in names}
    except zipfile.BadZipFile as e:
        raise ValueError(f"pose.npz is not a valid npz: {e}") from e
    out["layout"] = str(out["layout"]) if "layout" in out else "coco17"
    out["fps"] = float(out["fps"]) if "fps" in out else 30.0
    return out


def encode_triplet(t: Triplet) -> dict[str, bytes]:
    """A :class:`Triplet` -> tar members {extension: bytes}."""
    meta = dict(t.meta)
    meta["has_video"] = t.video is not None
    meta["has_text"] = t.text is not None
    members = {
        "pose.npz": encode_pose(t.keypoint, t.keypoint_score, t.layout, t.fps, t.keypoint_3d),
        "txt": t.caption.encode("utf-8"),
        "json": json.dumps(meta, sort_keys=True, default=_json_default).encode("utf-8"),
    }
    if t.text is not None:
        members["text.npy"] = npy_bytes(np.asarray(t.text, dtype=np.float16))
    else:
        members["text.npy"] = npy_bytes(np.zeros((0,), dtype=np.float16))
    if t.video is not None:
        members["video.npy"] = npy_bytes(np.asarray(t.video, dtype=np.float16))
    return members


def decode_triplet(
    key: str, members: dict[str, bytes], pose_fields: tuple[str, ...] | None = None
) -> Triplet:
    """Tar members of one key -> :class:`Triplet`; raises ValueError when a member is missing."""
    missing = [m for m in REQUIRED_MEMBERS if m not in members]
    if missing:
        raise ValueError(f"sample {key!r}: missing members {missing}")
    pose = decode_pose(members["pose.npz"], pose_fields)
    meta = json.loads(members["json"].decode("utf-8"))
    text = load_npy(members["text.npy"])
    video = load_npy(members["video.npy"]) if "video.npy" in members else None
    return Triplet(
        key=key,
        keypoint=pose["keypoint"],
        keypoint_score=pose["keypoint_score"],
        layout=pose["layout"],
        fps=pose["fps"],
        keypoint_3d=pose.get("keypoint_3d"),
        video=video if video is not None and video.size else None,
        text=text if text.size else None,
        caption=members["txt"].decode("utf-8"),
        meta=meta,
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
