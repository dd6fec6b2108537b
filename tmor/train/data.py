"""In-memory datasets for transfer: classification samples and untrimmed detection sequences.

Sources: a pyskl / mmaction2 PoseDataset pickle (``--data x.pkl`` with split names), or tmor
triplet shards (a corpus root or a folder of tars; the split comes from the card's import split or
a deterministic hash hold-out). Arrays follow the pyskl convention: keypoint (M, T, V, C) float32,
keypoint_score (M, T, V) float32. Models get (C, T, V, M) float32 from
:func:`tmor.skeleton.transforms.to_ctvm` (the pre-training reader's transform).

Untrimmed sequences carry ``segments``: a list of (class_id, start, end) frame ranges, end
exclusive; :func:`frame_targets` turns them into (T, K) multi-hot per-frame labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SkeletonSample:
    """One skeleton sequence with its label (classification) or segments (detection)."""

    name: str
    keypoint: np.ndarray  # (M, T, V, C) float32
    keypoint_score: np.ndarray  # (M, T, V) float32
    layout: str
    label: int = -1
    keypoint_3d: np.ndarray | None = None
    segments: list[tuple[int, int, int]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    video: np.ndarray | None = None  # (Dv,) frozen video embedding (triplet shards only)
    label_name: str | None = None

    @property
    def num_frames(self) -> int:
        return int(self.keypoint.shape[1])


@dataclass
class LoadedData:
    """Samples of one split, with the class names their labels index."""

    samples: list[SkeletonSample]
    classes: list[str]


def _ann_to_sample(ann: dict[str, Any], layout: str, label: int) -> SkeletonSample:
    from tmor.skeleton.layouts import check_layout

    kp = np.asarray(ann["keypoint"], np.float32)
    check_layout(str(ann.get("layout", layout)), int(kp.shape[2]),
                 f"{ann.get('frame_dir', '?')}: keypoint {kp.shape} (set --data-layout)")
    score = ann.get("keypoint_score")
    kp3 = None
    if kp.shape[-1] == 3:  # 3D (pyskl's NTU annotations, tmor's 3D export): x, y, z
        kp3, kp = kp, kp[..., :2]
    if score is None:
        score = (np.abs(kp).sum(-1) > 0).astype(np.float32)
    segs = [(int(c), int(s), int(e)) for c, s, e in ann.get("segments", [])]
    return SkeletonSample(
        name=str(ann["frame_dir"]), keypoint=kp[..., :2],
        keypoint_score=np.asarray(score, np.float32), layout=str(ann.get("layout", layout)),
        label=label, keypoint_3d=kp3, segments=segs,
        meta={k: ann[k] for k in ("fps", "source") if k in ann},
    )


def load_pyskl_split(path: str, split: str | None, layout: str = "coco17") -> LoadedData:
    """Samples of split ``split`` (None: all) of a pyskl pickle.

    Integer labels are kept and name ``label_names`` / ``classes`` when the pickle has them;
    string labels are mapped to ids over the sorted names of the whole pickle.
    """
    from tmor.shards.importers import load_pyskl

    data = load_pyskl(path)
    anns = data["annotations"]
    if split is not None:
        names = (data.get("split") or {}).get(split)
        if names is None:
            raise ValueError(f"{path}: no split {split!r}; has {sorted(data.get('split') or {})}")
        keep = {str(n) for n in names}
        anns = [a for a in anns if str(a["frame_dir"]) in keep]
    classes = list(data.get("label_names") or data.get("classes") or [])
    labels = [a.get("label") for a in data["annotations"]]
    if any(isinstance(x, str) for x in labels):
        classes = sorted({str(x) for x in labels if x is not None})
        ids = {c: i for i, c in enumerate(classes)}
        lab = [ids.get(str(a.get("label")), -1) for a in anns]
    else:
        lab = [int(a["label"]) if a.get("label") is not None else -1 for a in anns]
        n = max([int(x) for x in labels if x is not None] + [len(classes) - 1, -1]) + 1
        classes = classes + [str(i) for i in range(len(classes), n)]
    samples = [_ann_to_sample(a, layout, y) for a, y in zip(anns, lab, strict=True)]
    for a, smp in zip(anns, samples, strict=True):
        name = a.get("label_name") or (classes[smp.label] if smp.label >= 0 else None)
        smp.label_name = None if name is None else str(name)
    return LoadedData(samples, classes)


def _holdout(name: str, fraction: float) -> bool:
    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def load_shards_split(root: str, split: str | None, holdout: float = 0.2,
                      classes: Sequence[str] | None = None) -> LoadedData:
    """Samples of triplet shards under ``root``.

    split: a name of the card's import split (sample names are keys or frame_dirs), else a name
    in the samples' own ``splits`` (the benchmark importers write both), else "train" / "test"
    for a deterministic hash hold-out of ``holdout`` of the samples, or None for all samples.
    Labels index ``classes``; default: the card's ``split_classes[split]`` (e.g. Smarthome's 19
    cross-view classes), else the segments' class list, else the sorted label names.
    """
    from tmor.shards.card import read_corpus_card
    from tmor.shards.exporters import iter_triplets

    triplets = list(iter_triplets(root))
    all_labels = {str(t.label) for t in triplets if t.label is not None}
    seg_classes = next((t.meta["classes"] for t in triplets if t.meta.get("classes")), None)
    try:
        card = read_corpus_card(root).get("import") or {}
    except Exception:  # noqa: BLE001 - a folder of tars without a card
        card = {}
    card_split = card.get("split") or {}
    own = {s for t in triplets for s in t.meta.get("splits") or []}
    if split is not None:
        if split in card_split:
            keep = {str(n) for n in card_split[split]}
            triplets = [t for t in triplets
                        if t.key in keep or str(t.meta.get("frame_dir")) in keep]
        elif split in own:
            triplets = [t for t in triplets if split in (t.meta.get("splits") or [])]
        elif split in ("train", "test"):
            test = split == "test"
            triplets = [t for t in triplets if _holdout(t.key, holdout) == test]
        else:
            known = sorted(set(card_split) | own) or ["train", "test (hash hold-out)"]
            raise ValueError(f"{root}: no split {split!r}; it has {', '.join(known)}")
    split_classes = (card.get("split_classes") or {}).get(split or "")
    if classes is not None:
        names = list(classes)
    elif split_classes:
        names = [str(c) for c in split_classes]
    elif seg_classes:
        names = [str(c) for c in seg_classes]
    else:
        names = sorted(all_labels)
    ids = {c: i for i, c in enumerate(names)}
    out = []
    for t in triplets:
        segs = [(int(c), int(s), int(e)) for c, s, e in t.meta.get("segments", [])]
        bad = sorted({c for c, _, _ in segs if not 0 <= c < len(names)})
        if bad:
            from tmor.shards.checks import DataError

            raise DataError(f"{root}: {t.meta.get('frame_dir', t.key)}: segment class ids {bad} "
                            f"outside the {len(names)} classes")
        out.append(SkeletonSample(
            name=str(t.meta.get("frame_dir", t.key)), keypoint=t.keypoint,
            keypoint_score=t.keypoint_score, layout=t.layout,
            label=ids.get(str(t.label), -1) if t.label is not None else -1,
            keypoint_3d=t.keypoint_3d, segments=segs, meta=dict(t.meta),
            video=None if t.video is None else np.asarray(t.video, np.float32),
            label_name=None if t.label is None else str(t.label)))
    return LoadedData(out, names)


def load_split(data: str, split: str | None, layout: str = "coco17",
               holdout: float = 0.2) -> LoadedData:
    """A pyskl pickle (``.pkl`` / ``.pickle``) or triplet shards, by the path's form."""
    if data.endswith((".pkl", ".pickle")):
        return load_pyskl_split(data, split, layout)
    return load_shards_split(data, split, holdout)


# ---- classification --------------------------------------------------------------------------


@dataclass
class InputSpec:
    """How a sample becomes a model input: T frames, C channels, M persons, target layout."""

    frames: int = 64
    channels: int = 2
    max_persons: int = 2
    layout: str | None = None  # convert to this joint layout (None: keep the data's)


def data_channels(samples: Sequence[SkeletonSample]) -> int:
    """3 when every sample carries 3D joints (3D data stays 3D), else 2."""
    return 3 if samples and all(s.keypoint_3d is not None for s in samples) else 2


def sample_to_input(s: SkeletonSample, spec: InputSpec,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """(C, T, V, M) float32 through the pre-training transform (random crop + rotation with rng)."""
    from tmor.skeleton.transforms import to_ctvm

    return to_ctvm(s.keypoint, s.keypoint_score, s.layout, frames=spec.frames,
                   max_persons=spec.max_persons, channels=spec.channels,
                   keypoint_3d=s.keypoint_3d, dst_layout=spec.layout, rng=rng)


class ClassificationDataset:
    """A torch-style dataset: item i -> ((C, T, V, M) float32, label int)."""

    def __init__(self, samples: list[SkeletonSample], spec: InputSpec, augment: bool = False,
                 seed: int = 0) -> None:
        self.samples, self.spec, self.augment, self.seed = samples, spec, augment, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentations depend on (seed, epoch, index) only, so loader workers agree."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        s = self.samples[i]
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.augment else None
        return sample_to_input(s, self.spec, rng), s.label


def cut_windows(s: SkeletonSample, length: int, stride: int | None = None,
                label: int | None = None) -> list[SkeletonSample]:
    """Cut a sequence into windows of ``length`` frames every ``stride`` (default ``length``)."""
    stride = stride or length
    out = []
    for i, start in enumerate(range(0, max(s.num_frames - length, 0) + 1, stride)):
        sl = slice(start, start + length)
        out.append(SkeletonSample(
            name=f"{s.name}@{start}", keypoint=s.keypoint[:, sl], keypoint_score=s.keypoint_score[
                :, sl], layout=s.layout, label=s.label if label is None else label,
            keypoint_3d=None if s.keypoint_3d is None else s.keypoint_3d[:, sl],
            meta={**s.meta, "window": i, "start": start}))
    return out


# ---- detection -------------------------------------------------------------------------------


def frame_targets(segments: Sequence[tuple[int, int, int]], num_frames: int,
                  num_classes: int) -> np.ndarray:
    """(T, K) uint8 multi-hot per-frame labels from (class, start, end-exclusive) segments."""
    y = np.zeros((num_frames, num_classes), np.uint8)
    for c, s, e in segments:
        y[max(int(s), 0):min(int(e), num_frames), int(c)] = 1
    return y


def sequence_input(s: SkeletonSample, spec: InputSpec) -> np.ndarray:
    """A whole sequence frame by frame (no resampling): normalized (C, T, V, M) float32.

    The layout conversion, person selection and normalization match :func:`sample_to_input`, but
    frame t of the output is frame t of the input, so per-frame labels stay aligned.
    """
    from tmor.skeleton import transforms as tf

    score = np.where(np.isfinite(s.keypoint_score), s.keypoint_score, 0).astype(np.float32)
    if spec.channels == 3 and s.keypoint_3d is not None:
        coords, dims = np.asarray(s.keypoint_3d, np.float32), 3
    elif spec.channels == 3:
        coords, dims = np.concatenate([s.keypoint[..., :2], score[..., None]], -1), 2
    else:
        coords, dims = np.asarray(s.keypoint, np.float32)[..., :2], 2
    coords = np.nan_to_num(coords, nan=0.0, posinf=0.0, neginf=0.0)
    coords, score = tf.convert_layout(coords, score, s.layout, spec.layout)
    coords, score = tf.select_persons(coords, score, spec.max_persons)
    out = tf.normalize(coords, score, spec.layout or s.layout, dims)
    return np.ascontiguousarray(out.transpose(3, 1, 2, 0))


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Window starts covering every frame; the last window ends at the last frame."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


def take_window(x: np.ndarray, start: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, T, V, M) -> (C, window, V, M) from ``start``, zero-padded; and its (window,) mask."""
    c, t, v, m = x.shape
    out = np.zeros((c, window, v, m), np.float32)
    n = max(0, min(window, t - start))
    out[:, :n] = x[:, start:start + n]
    mask = np.zeros(window, bool)
    mask[:n] = True
    return out, mask


class DetectionWindows:
    """Item i -> (x (C, W, V, M), y (W, K) float32, mask (W,) bool) over all sequences' windows."""

    def __init__(self, samples: list[SkeletonSample], num_classes: int, spec: InputSpec,
                 window: int, stride: int) -> None:
        self.inputs = [sequence_input(s, spec) for s in samples]
        self.targets = [frame_targets(s.segments, s.num_frames, num_classes) for s in samples]
        self.window = window
        self.index = [(i, st) for i, s in enumerate(samples)
                      for st in window_starts(s.num_frames, window, stride)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i, st = self.index[k]
        x, mask = take_window(self.inputs[i], st, self.window)
        y = np.zeros((self.window, self.targets[i].shape[1]), np.float32)
        n = int(mask.sum())
        y[:n] = self.targets[i][st:st + n]
        return x, y, mask


# ---- validation split (model selection) --------------------------------------------------------


def carve_validation(data: LoadedData, fraction: float,
                     salt: str = "val") -> tuple[LoadedData, LoadedData]:
    """(train, val): ``fraction`` of ``data`` held out for model selection, at least one sample
    and never all, chosen by a salted hash of each sample's name (deterministic, independent of
    order, disjoint from the hash hold-out of the test split)."""
    n = len(data.samples)
    if n < 2:
        raise ValueError(f"cannot carve a validation split out of {n} training sample(s)")
    k = min(max(int(round(n * fraction)), 1), n - 1)
    rank = sorted(range(n), key=lambda i: hashlib.sha256(
        f"{salt}:{data.samples[i].name}".encode()).hexdigest())
    held = set(rank[:k])
    return (LoadedData([s for i, s in enumerate(data.samples) if i not in held], data.classes),
            LoadedData([s for i, s in enumerate(data.samples) if i in held], data.classes))


def carve_validation_tail(data: LoadedData, fraction: float) -> tuple[LoadedData, LoadedData]:
    """(train, val) for untrimmed sequences: the last ``fraction`` of every training sequence's
    frames becomes a validation sequence (segments clipped and shifted), the rest stays for
    training; works with a single training sequence and keeps train and val apart in time."""
    tr, va = [], []
    for s in data.samples:
        t = s.num_frames
        cut = min(max(int(round(t * (1 - fraction))), 1), t - 1) if t > 1 else t
        for part, (lo, hi) in ((tr, (0, cut)), (va, (cut, t))):
            if hi <= lo:
                continue
            segs = [(c, max(a, lo) - lo, min(b, hi) - lo) for c, a, b in s.segments
                    if min(b, hi) > max(a, lo)]
            part.append(SkeletonSample(
                name=f"{s.name}@{lo}", keypoint=s.keypoint[:, lo:hi],
                keypoint_score=s.keypoint_score[:, lo:hi], layout=s.layout, label=s.label,
                keypoint_3d=None if s.keypoint_3d is None else s.keypoint_3d[:, lo:hi],
                segments=segs, meta=dict(s.meta), video=s.video, label_name=s.label_name))
    if not va:
        raise ValueError("no training sequence is long enough to carve a validation part")
    return LoadedData(tr, data.classes), LoadedData(va, data.classes)


def validation_split(data: str, split_val: str | None, train: LoadedData, layout: str,
                     holdout: float, val_fraction: float, val: LoadedData | None = None,
                     by_time: bool = False) -> tuple[LoadedData, LoadedData, str]:
    """(train, val, where val came from): the data's ``split_val`` split when it has a non-empty
    one, else ``val_fraction`` of the training samples (:func:`carve_validation`) or, with
    ``by_time`` (untrimmed detection), of every training sequence's frames
    (:func:`carve_validation_tail`)."""
    if val is not None:
        return train, val, "given"
    if split_val:
        try:
            found = load_split(data, split_val, layout, holdout)
        except ValueError:
            found = None
        if found is not None and found.samples:
            return train, found, f"split {split_val!r}"
    if by_time:
        tr, va = carve_validation_tail(train, val_fraction)
        return tr, va, f"the last {val_fraction:g} of each training sequence's frames"
    tr, va = carve_validation(train, val_fraction)
    return tr, va, f"{len(va.samples)} of {len(train.samples)} training samples (by name hash)"
