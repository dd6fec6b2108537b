"""Per-sample array transforms of the reader: channel choice, layout conversion, person selection
and padding, temporal crop / resample to T, normalization (hips centre, torso scale), augmentation.

Everything is pure numpy on one sample; the result is (C, T, V, M) float32.
"""

from __future__ import annotations

import numpy as np

from tmor.skeleton import layouts
from tmor.skeleton.augment import rotate_np

#: (left hip, right hip, left shoulder, right shoulder) joint indices of known layouts
ANCHORS: dict[str, tuple[int, int, int, int]] = {
    "coco17": (11, 12, 5, 6),
    "ntu25": (12, 16, 4, 8),  # NTU RGB+D and Kinect v2 share one joint order
    "kinect25": (12, 16, 4, 8),
    "openpose25": (12, 9, 5, 2),  # OpenPose BODY_25
    "mediapipe33": (23, 24, 11, 12),
    "h36m17": (4, 1, 11, 14),
}


def convert_layout(
    keypoint: np.ndarray, score: np.ndarray, src: str, dst: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Map (M, T, V, C) keypoints and (M, T, V) scores from layout ``src`` to ``dst``.

    ``dst`` None or equal to ``src`` is the identity; otherwise :func:`layouts.convert`.
    """
    if dst is None or dst == src:
        return keypoint, score
    kp, sc = layouts.convert(keypoint, score, src, dst)
    return np.asarray(kp, dtype=np.float32), np.asarray(sc, dtype=np.float32)


def anchors(layout: str) -> tuple[int, int, int, int] | None:
    """Hip and shoulder joints of ``layout`` (None when unknown)."""
    if layout in ANCHORS:
        return ANCHORS[layout]
    names = layouts.JOINTS.get(layout)
    if names is None:
        return None
    names = [str(n).lower().replace(" ", "_") for n in names]
    want = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")
    if all(w in names for w in want):
        return tuple(names.index(w) for w in want)  # type: ignore[return-value]
    return None


def pyskl_arrays(
    keypoint: np.ndarray, score: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A pyskl sample's keypoint (M, T, V, C) and score (M, T, V) -> (x, y keypoints, score,
    keypoint_3d or None): C=3 is 3D (pyskl's NTU annotations); a missing score is 1 where a
    joint is non-zero."""
    kp = np.asarray(keypoint, np.float32)
    if score is None:
        score = (np.abs(kp).sum(-1) > 0).astype(np.float32)
    return kp[..., :2], np.asarray(score, np.float32), kp if kp.shape[-1] == 3 else None


def select_persons(keypoint: np.ndarray, score: np.ndarray, m: int) -> tuple[np.ndarray, ...]:
    """Keep the ``m`` persons with the largest total score (stable order), zero-pad to ``m``."""
    total = score.reshape(score.shape[0], -1).sum(axis=1) if score.shape[0] else np.zeros(0)
    order = np.argsort(-total, kind="stable")[:m]
    order = np.sort(order)
    kp, sc = keypoint[order], score[order]
    if kp.shape[0] < m:
        pad = m - kp.shape[0]
        kp = np.concatenate([kp, np.zeros((pad, *kp.shape[1:]), kp.dtype)], axis=0)
        sc = np.concatenate([sc, np.zeros((pad, *sc.shape[1:]), sc.dtype)], axis=0)
    return kp, sc


def frame_indices(
    length: int, valid: np.ndarray, t: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``t`` frame indices covering the valid span; with ``rng``, a random crop of 50-100% of it."""
    idx = np.flatnonzero(valid)
    lo, hi = (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, max(length, 1))
    span = hi - lo
    if rng is not None and span > 1:
        crop = max(1, int(round(span * rng.uniform(0.5, 1.0))))
        lo = lo + int(rng.integers(0, span - crop + 1))
        span = crop
    pos = np.linspace(0, span - 1, t) if span > 1 else np.zeros(t)
    return np.clip(lo + np.round(pos).astype(np.int64), 0, max(length - 1, 0))


def normalize(
    coords: np.ndarray, score: np.ndarray, layout: str, dims: int = 2
) -> np.ndarray:
    """Centre the first ``dims`` channels on the hips' mid-point and divide by the torso size.

    coords (M, T, V, C), score (M, T, V). Statistics come from the first person with valid
    anchors (its mean hip centre, its median shoulder-to-hip distance); joints with score 0 become
    zeros. Unknown layouts fall back to the mean and spread of all valid joints.
    """
    out = coords.astype(np.float32, copy=True)
    valid = score > 0
    xyz = out[..., :dims]
    a = anchors(layout)
    centre = scale = None
    if a is not None:
        lh, rh, ls, rs = a
        for p in range(out.shape[0]):
            ok = valid[p, :, lh] & valid[p, :, rh] & valid[p, :, ls] & valid[p, :, rs]
            if not ok.any():
                continue
            hip = (xyz[p, ok, lh] + xyz[p, ok, rh]) / 2
            sho = (xyz[p, ok, ls] + xyz[p, ok, rs]) / 2
            centre = hip.mean(axis=0)
            scale = float(np.median(np.linalg.norm(sho - hip, axis=-1)))
            break
    if centre is None or not scale or not np.isfinite(scale):
        pts = xyz[valid]
        if pts.shape[0] == 0:
            return np.zeros_like(out)
        centre = pts.mean(axis=0)
        scale = float(np.sqrt(((pts - centre) ** 2).sum(axis=-1).mean())) or 1.0
    xyz -= centre
    xyz /= max(scale, 1e-6)
    out[~valid] = 0.0
    return out


def to_ctvm(
    keypoint: np.ndarray,
    score: np.ndarray,
    layout: str,
    *,
    frames: int = 64,
    max_persons: int = 2,
    channels: int = 2,
    keypoint_3d: np.ndarray | None = None,
    dst_layout: str | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One sample's arrays -> normalized (C, T, V, M) float32.

    channels 2: x, y. channels 3: keypoint_3d when present, else x, y, score (pyskl's convention).
    With ``rng`` (augmentation): random temporal crop and random rotation.
    """
    if channels not in (2, 3):
        raise ValueError("channels must be 2 or 3")
    score = np.asarray(score, np.float32)
    length = score.shape[1]
    if length == 0 or score.shape[0] == 0:
        v = score.shape[2] if score.ndim == 3 else 0
        score = np.zeros((1, 1, v), np.float32)
        keypoint = np.zeros((1, 1, v, 2), np.float32)
        keypoint_3d = None if keypoint_3d is None else np.zeros((1, 1, v, 3), np.float32)
        length = 1
    # choose the T frames first: every later step works on T frames, not the whole clip
    valid_frames = (score > 0).any(axis=(0, 2))
    idx = frame_indices(length, valid_frames, frames, rng)
    score = score[:, idx]
    if channels == 3 and keypoint_3d is not None:
        coords, dims = np.asarray(keypoint_3d, np.float32)[:, idx], 3
    elif channels == 3:
        coords = np.concatenate([np.asarray(keypoint, np.float32)[:, idx, :, :2],
                                 score[..., None]], -1)
        dims = 2
    else:
        coords, dims = np.asarray(keypoint, np.float32)[:, idx, :, :2], 2
    coords = np.nan_to_num(coords, nan=0.0, posinf=0.0, neginf=0.0)
    score = np.where(np.isfinite(score), score, 0.0).astype(np.float32)
    coords, score = convert_layout(coords, score, layout, dst_layout)
    layout = dst_layout or layout
    coords, score = select_persons(coords, score, max_persons)
    out = normalize(coords, score, layout, dims)
    if rng is not None:
        rotate_np(out, dims, rng)
        out[score <= 0] = 0.0
    return np.ascontiguousarray(out.transpose(3, 1, 2, 0))  # (M,T,V,C) -> (C,T,V,M)
