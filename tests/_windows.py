"""Many short windows from a few real skeleton sequences: a small corpus for smoke training,
tests and benchmarks (the shared NTU RGB+D and FallFree Kinect v2 samples: 3D, 25 joints).

``write_window_corpus`` packs the windows as triplet shards (with the shard index) so that the
real streaming reader serves them. No video-language model is available offline, so their video
and text embeddings are stand-ins, float16, unit norm: video = a fixed seeded random projection of
the window's mean joint positions plus noise (so it carries the window's content, as a real video
embedding would), text = a seeded random vector per label.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    source: str
    start: int
    label: str
    keypoint_3d: np.ndarray     # (1, T, 25, 3) metres
    score: np.ndarray           # (1, T, 25)


def skeleton_windows(data_dir: str, frames: int = 16, stride: int = 8) -> list[Window]:
    """Windows of ``frames`` frames every ``stride`` frames over the 3D sequences of the shared
    data folder (``<data_dir>/skeletons``)."""
    from tmor.shards.importers import kinect_label, read_kinect_csv, read_ntu_npy

    sk = os.path.join(data_dir, "skeletons")
    seqs = [(p, *read_ntu_npy(p), "drop") for p in
            sorted(glob.glob(os.path.join(sk, "ntu_sample", "*.npy")))]
    seqs += [(p, *read_kinect_csv(p), kinect_label(p) or "unknown") for p in
             sorted(glob.glob(os.path.join(sk, "fallfree", "*.csv")))]
    out = []
    for path, kp, score, label in seqs:
        kp, score = kp[:1], score[:1]
        for s in range(0, kp.shape[1] - frames + 1, stride):
            out.append(Window(os.path.basename(path), s, label, kp[:, s:s + frames],
                              score[:, s:s + frames]))
    return out


def _unit(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.standard_normal(d).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float16)


def write_window_corpus(out_root: str, windows: list[Window], samples_per_shard: int = 64,
                        video_dim: int = 32, text_dim: int = 32, seed: int = 0,
                        overwrite: bool = False) -> list[str]:
    """Write windows as triplet shards under ``<out_root>/triplets`` (+ index); the shard URLs.
    A root holding a corpus is replaced only with ``overwrite``."""
    from tmor.shards.importers import make_triplet, write_imported
    from tmor.shards.index import shard_urls

    rng = np.random.default_rng(seed)
    text_of = {lab: _unit(rng, text_dim) for lab in sorted({w.label for w in windows})}
    proj = rng.standard_normal((video_dim, 25 * 3)).astype(np.float32)

    def gen():
        for w in windows:
            t = make_triplet(f"{w.source}#{w.start}", w.keypoint_3d[..., :2], w.score,
                             "ntu25", 30.0, w.label, keypoint_3d=w.keypoint_3d)
            pose = w.keypoint_3d[0].mean(0)                       # (25, 3)
            pose = (pose - pose.mean(0)).reshape(-1)
            v = proj @ (pose / max(float(np.linalg.norm(pose)), 1e-6))
            v = v / np.linalg.norm(v) + 0.3 * _unit(rng, video_dim).astype(np.float32)
            t.video = (v / np.linalg.norm(v)).astype(np.float16)
            t.text = text_of[w.label]
            yield t

    write_imported(out_root, gen(), samples_per_shard, {"format": "skeleton_windows"},
                   overwrite)
    return shard_urls(os.path.join(out_root, "triplets"))


def as_coco_pixels(path: str) -> tuple[np.ndarray, np.ndarray, str]:
    """A real skeleton file as the pose stage would store it: COCO-17 keypoints in pixels of a
    640x480 frame (metres x 200 around its centre; Kinect / NTU y points up, so it is flipped)."""
    from tmor.shards.importers import read_triplet
    from tmor.skeleton.layouts import convert

    t = read_triplet(path)
    kp, sc = convert(t.keypoint, t.keypoint_score, t.layout, "coco17")
    flip = -1.0 if t.layout == "ntu25" else 1.0
    px = np.stack([kp[..., 0] * 200 + 320, flip * kp[..., 1] * 200 + 240], -1)
    return px.astype(np.float32), sc.astype(np.float32), str(t.label)
