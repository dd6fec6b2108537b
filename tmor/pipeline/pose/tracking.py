"""Identities across frames: an IoU + keypoint-similarity Hungarian tracker, and top-M selection.

Per frame, every live track is matched to at most one detection by
:func:`scipy.optimize.linear_sum_assignment` on the similarity
``iou_weight * BIoU(box) + (1 - iou_weight) * OKS(keypoints)`` against the track's last seen
detection, where BIoU is the IoU of both boxes enlarged by ``buffer`` x their size on each side
(buffered IoU: it still overlaps when people move fast or frames are sampled sparsely); pairs
under ``min_similarity`` stay unmatched. A track survives ``max_age`` frames
without a detection (a missed detection or a short occlusion does not break it); a detection that
matches nothing starts a new track when its box score is at least ``new_track_score``.

Selection rule (:func:`select_tracks`): rank tracks by
``frames present x mean keypoint score x mean box area`` and keep the top ``max_persons``;
the number of the others is recorded as dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: COCO keypoint OKS sigmas (used for any layout of 17 joints; others use a flat 0.08)
COCO_SIGMAS = np.array(
    [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
     0.107, 0.107, 0.087, 0.087, 0.089, 0.089],
    np.float64,
)  # fmt: skip


@dataclass
class Detections:
    """The people found in one frame: boxes (N,4) xyxy, box scores (N,), keypoints (N,V,2),
    keypoint scores (N,V), optional keypoint_3d (N,V,3)."""

    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    keypoint_3d: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty(num_joints: int, with_3d: bool = False) -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, num_joints, 2), np.float32),
            np.zeros((0, num_joints), np.float32),
            np.zeros((0, num_joints, 3), np.float32) if with_3d else None,
        )


@dataclass
class Track:
    """One identity: frame position t -> index of its detection in that frame."""

    track_id: int
    last_t: int
    last_box: np.ndarray
    last_kp: np.ndarray
    last_kp_score: np.ndarray
    frames: dict[int, int] = field(default_factory=dict)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def buffered(boxes: np.ndarray, buffer: float) -> np.ndarray:
    """xyxy boxes enlarged by ``buffer`` x their width / height on each side."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] - buffer * wh, boxes[:, 2:] + buffer * wh], axis=1)


def oks(
    kp_a: np.ndarray,
    sc_a: np.ndarray,
    kp_b: np.ndarray,
    sc_b: np.ndarray,
    area_b: np.ndarray,
    min_score: float = 0.3,
) -> np.ndarray:
    """Object keypoint similarity (len(a), len(b)) over joints seen (score >= min_score) in both."""
    if len(kp_a) == 0 or len(kp_b) == 0:
        return np.zeros((len(kp_a), len(kp_b)))
    v = kp_a.shape[1]
    sig = COCO_SIGMAS if v == 17 else np.full(v, 0.08)
    d2 = ((kp_a[:, None] - kp_b[None]) ** 2).sum(-1)  # (A,B,V)
    scale = np.maximum(area_b, 1.0)[None, :, None] * (2 * sig[None, None, :]) ** 2 * 2
    sim = np.exp(-d2 / scale)
    seen = (sc_a[:, None] >= min_score) & (sc_b[None] >= min_score)
    n = seen.sum(-1)
    return np.where(n > 0, (sim * seen).sum(-1) / np.maximum(n, 1), 0.0)


class Tracker:
    """Online tracker fed one frame of :class:`Detections` at a time (see module doc)."""

    def __init__(
        self,
        max_age: int = 5,
        min_similarity: float = 0.1,
        iou_weight: float = 0.6,
        new_track_score: float = 0.4,
        buffer: float = 0.5,
    ):
        self.buffer = buffer
        self.max_age = max_age
        self.min_similarity = min_similarity
        self.iou_weight = iou_weight
        self.new_track_score = new_track_score
        self.tracks: list[Track] = []
        self._live: list[Track] = []
        self._t = 0

    def update(self, det: Detections) -> list[int]:
        """Assign this frame's detections; return the track id per detection (-1: none)."""
        from scipy.optimize import linear_sum_assignment

        t = self._t
        self._t += 1
        self._live = [tr for tr in self._live if t - tr.last_t <= self.max_age]
        ids = [-1] * len(det)
        matched_det: set[int] = set()
        if self._live and len(det):
            boxes = np.stack([tr.last_box for tr in self._live])
            kps = np.stack([tr.last_kp for tr in self._live])
            kss = np.stack([tr.last_kp_score for tr in self._live])
            area = np.clip(det.boxes[:, 2:] - det.boxes[:, :2], 0, None).prod(-1)
            biou = box_iou(buffered(boxes, self.buffer), buffered(det.boxes, self.buffer))
            sim = self.iou_weight * biou + (1 - self.iou_weight) * oks(
                kps, kss, det.keypoints, det.keypoint_scores, area
            )
            rows, cols = linear_sum_assignment(-sim)
            for r, c in zip(rows, cols, strict=True):
                if sim[r, c] < self.min_similarity:
                    continue
                self._assign(self._live[r], t, det, int(c))
                ids[c] = self._live[r].track_id
                matched_det.add(int(c))
        for c in range(len(det)):
            if c in matched_det or det.box_scores[c] < self.new_track_score:
                continue
            tr = Track(len(self.tracks), t, det.boxes[c], det.keypoints[c], det.keypoint_scores[c])
            tr.frames[t] = c
            self.tracks.append(tr)
            self._live.append(tr)
            ids[c] = tr.track_id
        return ids

    @staticmethod
    def _assign(tr: Track, t: int, det: Detections, c: int) -> None:
        tr.last_t = t
        tr.last_box = det.boxes[c]
        tr.last_kp = det.keypoints[c]
        tr.last_kp_score = det.keypoint_scores[c]
        tr.frames[t] = c


@dataclass
class Tracked:
    """Kept tracks as pyskl arrays (absent frames are zeros with score 0)."""

    keypoint: np.ndarray  # (M, T, V, 2) float32
    keypoint_score: np.ndarray  # (M, T, V) float32
    box: np.ndarray  # (M, T, 4) float32
    track_id: np.ndarray  # (M,) int64
    keypoint_3d: np.ndarray | None  # (M, T, V, 3) float32
    dropped: int
    rank_score: np.ndarray  # (M,) the selection score of each kept track


def track_rank(tr: Track, frames: list[Detections]) -> float:
    """frames present x mean keypoint score x mean box area."""
    scores, areas = [], []
    for t, c in tr.frames.items():
        d = frames[t]
        scores.append(float(d.keypoint_scores[c].mean()))
        b = d.boxes[c]
        areas.append(float(max(b[2] - b[0], 0) * max(b[3] - b[1], 0)))
    return len(tr.frames) * float(np.mean(scores)) * float(np.mean(areas))


def select_tracks(
    tracks: list[Track], frames: list[Detections], max_persons: int, num_joints: int
) -> Tracked:
    """Keep the top ``max_persons`` tracks (module doc rule) as (M, T, ...) arrays."""
    t_len = len(frames)
    with_3d = any(f.keypoint_3d is not None for f in frames)
    ranked = sorted(tracks, key=lambda tr: track_rank(tr, frames), reverse=True)
    keep = ranked[: max(0, max_persons)]
    m = len(keep)
    kp = np.zeros((m, t_len, num_joints, 2), np.float32)
    sc = np.zeros((m, t_len, num_joints), np.float32)
    box = np.zeros((m, t_len, 4), np.float32)
    k3 = np.zeros((m, t_len, num_joints, 3), np.float32) if with_3d else None
    for i, tr in enumerate(keep):
        for t, c in tr.frames.items():
            d = frames[t]
            kp[i, t] = d.keypoints[c]
            sc[i, t] = d.keypoint_scores[c]
            box[i, t] = d.boxes[c]
            if k3 is not None and d.keypoint_3d is not None:
                k3[i, t] = d.keypoint_3d[c]
    return Tracked(
        keypoint=kp,
        keypoint_score=sc,
        box=box,
        track_id=np.array([tr.track_id for tr in keep], np.int64),
        keypoint_3d=k3,
        dropped=len(tracks) - m,
        rank_score=np.array([track_rank(tr, frames) for tr in keep], np.float64),
    )
