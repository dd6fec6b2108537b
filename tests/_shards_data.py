"""Real skeleton data for the shard tests, and a hand-made upstream corpus for ``pack``.

The upstream corpus holds what fetch / pose / caption / embed write (tars through tario and
ledger parquet files through the manifests module), built from the real skeletons in
../shared/data/skeletons; the embeddings are fixed random float16 vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmor.manifests import ledger as L
from tmor.manifests.keys import sample_key
from tmor.manifests.plan import plan_shards, read_plan_shard, write_plan
from tmor.shards.codec import npy_bytes
from tmor.shards.tario import write_tar_samples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EMBED_DIM = 32


def skeleton_dir() -> Path:
    path = DATA / "skeletons"
    if not path.exists():
        pytest.skip(f"real skeleton data not found at {path} (../shared/data beside the repo)")
    return path


def skeleton_files() -> list[Path]:
    """Every real skeleton file: 4 Kinect CSV, 1 NTU npy, 1 FSD-10 npy."""
    return sorted(p for p in skeleton_dir().glob("*/*") if p.suffix in (".csv", ".npy"))


def coco_pixels(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """A real skeleton file as the pose stage would store it: COCO-17 pixel keypoints."""
    from _windows import as_coco_pixels

    return as_coco_pixels(str(path))


def pose_npz(kp: np.ndarray, sc: np.ndarray) -> bytes:
    import io

    m, t = kp.shape[:2]
    lo, hi = kp.min(axis=2), kp.max(axis=2)
    buf = io.BytesIO()
    np.savez(
        buf, keypoint=kp, keypoint_score=sc, track_id=np.arange(m, dtype=np.int64),
        box=np.concatenate([lo, hi], -1).astype(np.float32), frame_index=np.arange(t),
        fps=np.float32(30.0), img_shape=np.array([480, 640]), layout=np.array("coco17"),
        backend=np.array("yolo"), model=np.array("yolo11n-pose"), model_sha256=np.array("869e83"),
    )
    return buf.getvalue()


def build_upstream(root: str, low_score: str | None = None, short: str | None = None,
                   pose_failed: str | None = None, shard_size: int = 3) -> dict[str, str]:
    """Plan + fetch/pose/caption/embed outputs for every real skeleton file; returns
    {file stem: key}. ``low_score`` / ``short`` name a file stem whose pose is degraded (scores
    x0.1 / 5 frames); ``pose_failed`` one whose pose ledger row says failed."""
    files = skeleton_files()
    rows, keys, poses = [], {}, {}
    for p in files:
        key = sample_key(str(p), None, None)
        keys[p.stem] = key
        poses[key] = coco_pixels(p)
        rows.append({"key": key, "source": str(p), "source_kind": "local", "start": None,
                     "end": None, "label": poses[key][2], "caption": None, "meta": "{}"})
    write_plan(root, pd.DataFrame(rows), shard_size=shard_size)
    rng = np.random.default_rng(0)
    by_key = {keys[p.stem]: p for p in files}
    for shard in plan_shards(root):
        plan = read_plan_shard(root, shard)
        fetch, pose, embed = [], [], []
        led: dict[str, list[dict]] = {"fetch": [], "pose": [], "caption": [], "embed": []}
        for key in plan["key"]:
            p = by_key[key]
            kp, sc, label = poses[key]
            if p.stem == low_score:
                sc = sc * 0.1
            if p.stem == short:
                kp, sc = kp[:, :5], sc[:, :5]
            meta = {"source": str(p), "fps": 30.0, "width": 640, "height": 480,
                    "frames": int(kp.shape[1])}
            fetch.append((key, {"json": json.dumps(meta).encode()}))
            led["fetch"].append({"key": key, "status": "ok", "flags": []})
            if p.stem == pose_failed:
                led["pose"].append({"key": key, "status": "failed", "error_class": "bad_input",
                                    "error": "no frames", "flags": []})
            else:
                pose.append((key, {"pose.npz": pose_npz(kp, sc)}))
                led["pose"].append({"key": key, "status": "ok", "flags": [],
                                    "frames": int(kp.shape[1])})
            led["caption"].append({"key": key, "status": "ok", "flags": [],
                                   "caption": f"a person is {label}", "caption_source": "label"})
            v, t = rng.standard_normal((2, EMBED_DIM)).astype(np.float16)
            embed.append((key, {"video.npy": npy_bytes(v), "text.npy": npy_bytes(t),
                                "embed.json": json.dumps({"model_id": "tiny"}).encode()}))
            led["embed"].append({"key": key, "status": "ok", "flags": [], "model_id": "tiny",
                                 "video_text_sim": 0.3})
        write_tar_samples(L.tar_url(root, "fetch", shard), fetch)
        write_tar_samples(L.tar_url(root, "pose", shard), pose)
        write_tar_samples(L.tar_url(root, "embed", shard), embed)
        for stage, rows_ in led.items():
            L.write_ledger(root, stage, shard, rows_)
    return keys


def import_all(root: str, samples_per_shard: int = 2) -> dict:
    """Import every real skeleton file into ``<root>/triplets`` (3 shards of 2)."""
    from tmor.shards.importers import import_files

    return import_files([str(p) for p in skeleton_files()], root,
                        samples_per_shard=samples_per_shard)
