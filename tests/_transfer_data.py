"""Real skeleton fixtures for the transfer tests, built from ../shared/data (never copied)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SKEL = DATA / "skeletons"


def require_data() -> Path:
    if not SKEL.is_dir():
        pytest.skip(f"real test data not found at {SKEL}")
    return SKEL


def real_sequences() -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray | None, str]]:
    """(name, class, keypoint (M,T,V,2), score (M,T,V), keypoint_3d | None, layout) per file."""
    from tmor.shards import importers as imp

    root = require_data()
    out = []
    for f in sorted((root / "fallfree").glob("*.csv")):
        kp3, sc = imp.read_kinect_csv(str(f))
        cls = "falling" if f.name.lower().startswith("fall") else "walking"
        out.append((f.stem, cls, kp3[..., :2], sc, kp3, "ntu25"))
    kp3, sc = imp.read_ntu_npy(str(root / "ntu_sample" / "ntu60_A005_drop.npy"))
    out.append(("ntu60_A005", "drop", kp3[..., :2], sc, kp3, "ntu25"))
    kp, sc = imp.read_fsd10_npy(str(root / "fsd10_sample" / "fsd10_class27.npy"))
    out.append(("fsd10_27", "figure skating", kp, sc, None, "body25"))
    return out


def windows_pickle(path: Path, window: int = 16, train_frac: float = 0.7,
                   max_train: int = 10, max_test: int = 5) -> dict:
    """A pyskl pickle of windows cut from the real sequences: per recording, windows of the
    first ``train_frac`` of its frames go to split 'train' (stride window/2) and windows of the
    rest to 'test' (no overlap), so no test frame is ever seen in training."""
    per_class: dict[str, dict[str, list[dict]]] = {}
    for name, cls, kp, sc, _, layout in real_sequences():
        t = kp.shape[1]
        cut = int(t * train_frac)
        parts = {"train": (0, cut, window // 2), "test": (cut, t, window)}
        for split, (lo, hi, stride) in parts.items():
            for s in range(lo, hi - window + 1, stride):
                per_class.setdefault(cls, {"train": [], "test": []})[split].append({
                    "frame_dir": f"{name}@{s}", "total_frames": window, "label": cls,
                    "img_shape": (1080, 1920), "original_shape": (1080, 1920),
                    "keypoint": kp[:, s:s + window].astype(np.float32),
                    "keypoint_score": sc[:, s:s + window].astype(np.float32),
                    "layout": layout,
                })
    anns: list[dict] = []
    split: dict[str, list[str]] = {"train": [], "test": []}
    for cls in sorted(per_class):
        for name, cap in (("train", max_train), ("test", max_test)):
            items = per_class[cls][name]
            pick = np.linspace(0, len(items) - 1, min(cap, len(items))).round().astype(int)
            for i in sorted(set(pick.tolist())):
                anns.append(items[i])
                split[name].append(items[i]["frame_dir"])
    data = {"split": split, "annotations": anns}
    path.write_bytes(pickle.dumps(data))
    return data
