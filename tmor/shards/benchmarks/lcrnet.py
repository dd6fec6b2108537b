"""LCR-Net++ pose JSON (Toyota Smarthome, TSU, UNIK's Penn Action poses): read and write.

Schema (FORMATS.md section 1): ``{"K": anchors, "njts": 13, "frames": [[{"pose2d": [26],
"pose3d": [39], ("cumscore")}, ...], ...]}``, one entry per video frame, an empty list when nobody
was detected. The flat arrays are **coordinate-major**: ``[x0..x12, y0..y12(, z0..z12)]``, joints
in the ``lcrnet13`` order (right ankle first). Detections come sorted by LCR-Net's score; the
first ``max_persons`` of each frame are kept in that order, every frame is kept (an empty frame is
zeros with score 0), and a detected person's joints score 1 (LCR-Net gives no joint confidence).
pose2d is in pixels, pose3d in metres.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tmor import fsio

NJTS = 13


def _flat(values: Any, dims: int, njts: int) -> np.ndarray:
    a = np.asarray(values, np.float32)
    if a.size != dims * njts:
        raise ValueError(f"expected {dims * njts} values, got {a.size}")
    return a.reshape(dims, njts).T  # coordinate-major -> (njts, dims)


def parse_lcrnet(obj: dict[str, Any], max_persons: int = 2
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A decoded LCR-Net JSON -> keypoint (M, T, 13, 2), score (M, T, 13), keypoint_3d
    (M, T, 13, 3) or None when no detection has pose3d. M = the most detections in a frame, at
    most ``max_persons`` (at least 1)."""
    if not isinstance(obj, dict):
        raise ValueError(f"a JSON {type(obj).__name__} where an object belongs")
    njts = int(obj.get("njts", NJTS))
    if njts != NJTS:
        raise ValueError(f"njts={njts}: the lcrnet13 layout has {NJTS} joints")
    frames = obj.get("frames")
    if not isinstance(frames, list):
        raise ValueError("no 'frames' list")
    t = len(frames)
    if not t or not all(isinstance(f, list) for f in frames):
        raise ValueError("'frames' must be a non-empty list of per-frame detection lists")
    m = max([min(len(f), max_persons) for f in frames] + [1])
    kp = np.zeros((m, t, njts, 2), np.float32)
    kp3 = np.zeros((m, t, njts, 3), np.float32)
    score = np.zeros((m, t, njts), np.float32)
    has3d = False
    for i, dets in enumerate(frames):
        for p, det in enumerate(dets[:m]):
            kp[p, i] = _flat(det["pose2d"], 2, njts)
            score[p, i] = 1.0
            if det.get("pose3d") is not None:
                kp3[p, i] = _flat(det["pose3d"], 3, njts)
                has3d = True
    return kp, score, (kp3 if has3d else None)


def read_lcrnet(url: str, max_persons: int = 2
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One LCR-Net JSON file -> see :func:`parse_lcrnet`; errors are one line naming the file."""
    from tmor.shards.checks import DataError, describe, read_input

    try:
        obj = json.loads(read_input(url))
    except ValueError as e:
        raise DataError(f"{url}: not JSON ({e})") from None
    try:
        return parse_lcrnet(obj, max_persons)
    except Exception as e:  # noqa: BLE001 - any malformed content
        raise DataError(f"{url}: not an LCR-Net pose file ({describe(e)})") from None


def lcrnet_frames(keypoint: np.ndarray, score: np.ndarray,
                  keypoint_3d: np.ndarray | None = None) -> list[list[dict[str, Any]]]:
    """(M, T, 13, 2) arrays -> the ``frames`` list (a person is written where any joint scores
    above 0), coordinate-major as LCR-Net writes it."""
    frames: list[list[dict[str, Any]]] = []
    for i in range(keypoint.shape[1]):
        dets = []
        for p in range(keypoint.shape[0]):
            if not (score[p, i] > 0).any():
                continue
            det = {"pose2d": keypoint[p, i, :, :2].T.reshape(-1).astype(float).tolist()}
            if keypoint_3d is not None:
                det["pose3d"] = keypoint_3d[p, i].T.reshape(-1).astype(float).tolist()
            dets.append(det)
        frames.append(dets)
    return frames


def write_lcrnet(url: str, keypoint: np.ndarray, score: np.ndarray,
                 keypoint_3d: np.ndarray | None = None, k: int = 5) -> None:
    """Write arrays as an LCR-Net JSON (the v1.2 release's ``"K": 5``, no cumscore)."""
    obj = {"K": k, "njts": NJTS, "frames": lcrnet_frames(keypoint, score, keypoint_3d)}
    fsio.write_bytes(url, json.dumps(obj).encode())
