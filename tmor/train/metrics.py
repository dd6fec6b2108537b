"""Evaluation metrics, each written to match its benchmark's reference evaluation code.

Classification
- :func:`top_k_accuracy`: mmaction2 / pyskl ``top_k_accuracy`` (a sample counts when its label is
  among the k highest scores; ties between scores are broken towards the higher class index, as
  their ascending ``argsort(...)[:, -k:]`` does).
- :func:`mean_class_accuracy`: Toyota Smarthome's "mean per-class accuracy" (the mean over classes
  present in the ground truth of each class's recall; mmaction2 ``mean_class_accuracy``).

Frame-wise detection (multi-label, one row per frame)
- :func:`frame_ap`: the per-class AP of Charades_v1_localize.m (``THUMOSeventclspr``): frames
  sorted by descending score (a stable sort, so ties keep input order), AP = mean precision at the
  ranks of the positives, no interpolation. The TSU evaluation's APMeter computes the same value.
- :func:`charades_frame_map`: Charades' protocol: 25 frames per video at times (j-1)/25*length,
  j=1..25, a frame positive for a class when start <= t <= end; a video with no prediction scores
  -inf. The reference averages over all classes; a class with no positive frame has AP NaN there
  (0/0) and we leave it out of the mean (nanmean), reporting it as NaN.
- :func:`tsu_frame_map`: Toyota Smarthome Untrimmed's Frame_based_map.py: APMeter over all frames
  of all videos, AP 0 for a class without positives, mAP = sum(AP) / count(AP != 0), i.e. classes
  absent from the test set (and classes scoring exactly 0) are left out.

Event-level detection (PKU-MMD, evaluate.py by Chunhui Liu, STRUCT ICST PKU, 2017)
- :func:`event_ap` / :func:`event_map`: proposals (label, start, end, confidence, video) matched to
  ground-truth segments of the same class and video with overlap (min(e)-max(s))/(max(e)-min(s))
  >= theta (the best-overlapping one; several proposals may hit one ground truth but it counts
  once), then interpolated AP computed by removing proposals from the lowest confidence up.
  mAP is the mean over all ``num_classes`` classes; a class without ground truth scores 0 there.
- :func:`scores_to_segments` turns per-frame scores into scored segments: runs of frames whose
  score >= threshold, confidence = the run's mean score; segments are [start, end) in frames.
- :func:`labels_to_segments` turns per-frame 0/1 labels into ground-truth segments the same way.

Reports: :func:`confusion_matrix`, :func:`per_class_table`, :func:`save_confusion_png`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tmor.skeleton.segments import Segment, runs
from tmor.skeleton.segments import labels_to_segments as labels_to_segments  # re-exported

# ---- classification -------------------------------------------------------------------------


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` highest of ``scores`` (N, K)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    top = np.argsort(scores, axis=1, kind="stable")[:, -k:]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes present in ``labels`` of (correct top-1 in class / samples in class)."""
    scores = np.asarray(scores)
    labels = np.asarray(labels, np.int64)
    pred = np.argmax(scores, axis=1)
    cm = confusion_matrix(pred, labels, scores.shape[1])
    support = cm.sum(1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / support[present]))


def per_class_table(scores: np.ndarray, labels: np.ndarray,
                    class_names: Sequence[str] | None = None) -> list[dict]:
    """One row per class: name, support, correct, accuracy (recall), precision, predicted."""
    scores = np.asarray(scores)
    k = scores.shape[1]
    cm = confusion_matrix(np.argmax(scores, 1), labels, k)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    rows = []
    for c in range(k):
        support, predicted, correct = int(cm[c].sum()), int(cm[:, c].sum()), int(cm[c, c])
        rows.append({
            "class": c, "name": names[c], "support": support, "correct": correct,
            "predicted": predicted,
            "accuracy": correct / support if support else None,
            "precision": correct / predicted if predicted else None,
        })
    return rows


def save_confusion_png(cm: np.ndarray, path: str, class_names: Sequence[str] | None = None,
                       normalize: bool = True) -> None:
    """Write the confusion matrix as a PNG (rows normalized to recall when ``normalize``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tmor import fsio

    cm = np.asarray(cm, dtype=np.float64)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = cm.shape[0]
    size = min(4 + 0.25 * k, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if class_names is not None and k <= 60:
        ax.set_xticks(range(k), list(class_names), rotation=90, fontsize=7)
        ax.set_yticks(range(k), list(class_names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}",
                        ha="center", va="center", fontsize=7)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    fsio.write_bytes(path, buf.getvalue())


# ---- frame-wise detection -------------------------------------------------------------------


def frame_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class AP of Charades' ``THUMOSeventclspr``: (F, K) scores, (F, K) 0/1 -> (K,).

    NaN for a class without positives (the reference divides 0 by 0).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0
    if scores.ndim == 1:
        scores, targets = scores[:, None], targets[:, None]
    out = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        tp = targets[order, c]
        npos = int(tp.sum())
        if npos == 0:
            continue
        prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
        out[c] = float(prec[tp].sum() / npos)
    return out


@dataclass
class FrameMAP:
    """A frame mAP with the per-class APs it averages (NaN: left out of the mean)."""

    map: float
    ap: np.ndarray
    num_frames: int

    def as_dict(self) -> dict:
        return {"map": self.map, "num_frames": self.num_frames,
                "ap": [None if np.isnan(a) else float(a) for a in self.ap]}


def charades_sample_indices(num_frames: int, frames_per_video: int = 25) -> np.ndarray:
    """Frame indices of Charades' sampled frames: t_j = (j-1)/25 * length, j = 1..25.

    With per-frame predictions of ``num_frames`` frames spanning the video, time t maps to frame
    floor(t / length * num_frames) (so frame 0 is the first sample).
    """
    j = np.arange(frames_per_video)
    return np.minimum((j * num_frames) // frames_per_video, max(num_frames - 1, 0))


def charades_targets(segments: Sequence[tuple[int, float, float]], length: float,
                     num_classes: int, frames_per_video: int = 25) -> np.ndarray:
    """(25, K) ground truth at Charades' sample times from (class, start_s, end_s) actions."""
    y = np.zeros((frames_per_video, num_classes), dtype=np.int8)
    for j in range(frames_per_video):
        t = j / frames_per_video * length
        for c, s, e in segments:
            if s <= t <= e:
                y[j, int(c)] = 1
    return y


def charades_frame_map(video_scores: Sequence[np.ndarray | None],
                       video_targets: Sequence[np.ndarray],
                       frames_per_video: int = 25) -> FrameMAP:
    """Charades_v1_localize per-frame mAP.

    video_scores:  per video, (F_i, K) per-frame scores over the whole video (sampled here at
                   the 25 Charades times), or already (25, K), or None for a missing video (-inf).
    video_targets: per video, (25, K) 0/1 at the sample times (see :func:`charades_targets`), or
                   (F_i, K) per-frame labels, sampled at the same frame indices as the scores.
    """
    s_rows, t_rows = [], []
    for sc, tg in zip(video_scores, video_targets, strict=True):
        tg = np.asarray(tg)
        if tg.shape[0] != frames_per_video:
            tg = tg[charades_sample_indices(tg.shape[0], frames_per_video)]
        if sc is None:
            sc = np.full(tg.shape, -np.inf)
        sc = np.asarray(sc, dtype=np.float64)
        if sc.shape[0] != frames_per_video:
            sc = sc[charades_sample_indices(sc.shape[0], frames_per_video)]
        s_rows.append(sc)
        t_rows.append(tg)
    scores, targets = np.concatenate(s_rows), np.concatenate(t_rows)
    ap = frame_ap(scores, targets)
    m = float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else float("nan")
    return FrameMAP(m, ap, len(scores))


def tsu_frame_map(scores: np.ndarray, targets: np.ndarray) -> FrameMAP:
    """TSU Frame_based_map.py: all frames pooled, mAP over classes with AP != 0.

    scores, targets: (F, K) over all frames of all test videos (concatenate per-video arrays).
    Per-class AP is 0 (not NaN) for classes without positives, as the APMeter returns.
    """
    ap = np.nan_to_num(frame_ap(scores, targets), nan=0.0)
    nz = ap != 0
    m = float(ap[nz].mean()) if nz.any() else float("nan")
    return FrameMAP(m, np.where(nz, ap, np.nan), int(np.asarray(scores).shape[0]))


# ---- event-level detection (PKU-MMD) --------------------------------------------------------

#: (label, start, end, confidence, video)


def scores_to_segments(scores: np.ndarray, video: str = "", threshold: float = 0.5,
                       min_length: int = 1) -> list[Segment]:
    """Per-frame (T, K) scores -> scored segments [start, end) per class.

    A segment is a run of frames with score >= ``threshold`` at least ``min_length`` long; its
    confidence is the mean score over the run.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    out: list[Segment] = []
    for c in range(scores.shape[1]):
        for s, e in runs(scores[:, c] >= threshold):
            if e - s >= min_length:
                out.append((c, float(s), float(e), float(scores[s:e, c].mean()), video))
    return out


def _overlap(p: Segment, g: Segment) -> float:
    if int(p[0]) != int(g[0]) or p[4] != g[4]:
        return 0.0
    span = max(p[2], g[2]) - min(p[1], g[1])
    if span == 0:
        return 0.0
    return (min(p[2], g[2]) - max(p[1], g[1])) / span


def _match(props: list[Segment], theta: float, ground: list[Segment]
           ) -> tuple[list[int], list[int], int]:
    """Each proposal -> index of its best ground truth with overlap >= theta (ties: the later
    one), or -1; how many proposals hit each ground truth; how many ground truths are hit.

    Vectorized per (class, video): other pairs overlap 0, which never reaches theta > 0.
    """
    cos_map = [-1] * len(props)
    count = [0] * len(ground)
    if theta <= 0:  # degenerate: every pair qualifies, as in the reference's loop
        for i, p in enumerate(props):
            best = -np.inf
            for j, g in enumerate(ground):
                o = _overlap(p, g)
                if o >= theta and o >= best:
                    best, cos_map[i] = o, j
    else:
        g_idx: dict[tuple[int, str], list[int]] = {}
        for j, g in enumerate(ground):
            g_idx.setdefault((int(g[0]), g[4]), []).append(j)
        p_idx: dict[tuple[int, str], list[int]] = {}
        for i, p in enumerate(props):
            p_idx.setdefault((int(p[0]), p[4]), []).append(i)
        for key, pi in p_idx.items():
            gi = g_idx.get(key)
            if not gi:
                continue
            ps = np.array([props[i][1:3] for i in pi], np.float64)
            gs = np.array([ground[j][1:3] for j in gi], np.float64)
            inter = (np.minimum(ps[:, None, 1], gs[None, :, 1])
                     - np.maximum(ps[:, None, 0], gs[None, :, 0]))
            span = (np.maximum(ps[:, None, 1], gs[None, :, 1])
                    - np.minimum(ps[:, None, 0], gs[None, :, 0]))
            with np.errstate(divide="ignore", invalid="ignore"):
                o = np.where(span == 0, 0.0, inter / np.where(span == 0, 1.0, span))
            ok = o >= theta
            last = len(gi) - 1 - np.argmax(np.where(ok, o, -np.inf)[:, ::-1], axis=1)
            for r, i in enumerate(pi):
                if ok[r].any():
                    cos_map[i] = gi[int(last[r])]
    for j in cos_map:
        if j != -1:
            count[j] += 1
    return cos_map, count, sum(c > 0 for c in count)


def _pr(positive: int, proposals: int, ground: int) -> tuple[float, float]:
    if proposals == 0 or ground == 0:
        return 0.0, 0.0
    return positive / proposals, positive / ground


def event_ap(props: Sequence[Segment], theta: float, ground: Sequence[Segment]) -> float:
    """PKU-MMD interpolated AP of one class's proposals against its ground truth."""
    props = sorted(props, key=lambda x: x[3])  # ascending confidence, stable
    ground = list(ground)
    cos_map, count, positive = _match(props, theta, ground)
    n_prop, n_ground = len(props), len(ground)
    old_p, old_r = _pr(positive, n_prop, n_ground)
    score = 0.0
    for i in range(len(props)):
        n_prop -= 1
        if cos_map[i] == -1:
            continue
        count[cos_map[i]] -= 1
        if count[cos_map[i]] == 0:
            positive -= 1
        p, r = _pr(positive, n_prop, n_ground)
        old_p = max(old_p, p)
        score += old_p * (old_r - r)
        old_r = r
    return score


def event_map(props: Sequence[Segment], ground: Sequence[Segment], num_classes: int,
              thetas: Sequence[float] = (0.1, 0.3, 0.5)) -> dict:
    """PKU-MMD mAP_action at each tIoU: {theta: {"map", "map_present", "ap": [K]}}.

    ``map`` divides by all ``num_classes`` as the reference does; ``map_present`` averages only
    the classes that have ground truth.
    """
    by_p: list[list[Segment]] = [[] for _ in range(num_classes)]
    by_g: list[list[Segment]] = [[] for _ in range(num_classes)]
    for p in props:
        by_p[int(p[0])].append(p)
    for g in ground:
        by_g[int(g[0])].append(g)
    present = [c for c in range(num_classes) if by_g[c]]
    out = {}
    for th in thetas:
        ap = [event_ap(by_p[c], th, by_g[c]) for c in range(num_classes)]
        out[float(th)] = {
            "map": float(np.mean(ap)) if ap else float("nan"),
            "map_present": float(np.mean([ap[c] for c in present])) if present else float("nan"),
            "ap": ap,
        }
    return out
