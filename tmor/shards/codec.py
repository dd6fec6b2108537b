"""Encode and decode one triplet sample: pose.npz, video.npy, text.npy, txt and json members.

Arrays follow docs/contracts.md: keypoint (M, T, V, C) float32, keypoint_score (M, T, V) float32,
optional keypoint_3d (M, T, V, 3) float32 metres, embeddings (D,) float16.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tmor.skeleton.npz import decode_pose, encode_pose, load_npy, npy_bytes

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
    origin: str = ""  # the file an importer read it from, for error messages (not stored)

    @property
    def label(self) -> str | None:
        return self.meta.get("label")


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
