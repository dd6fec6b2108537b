"""``tmor-data validate``: check every triplet shard of a corpus against docs/contracts.md.

Checks: every tar readable through the tario safety checks, members complete, shapes and dtypes
as documented, no NaN or Inf, keys unique across shards, embedding sizes consistent, and the
shard index file (when present) in agreement with the shards. Members are decoded under the
reader's bounds (a pose.npz inflates to at most 1 GiB, an .npy holds what its header declares),
so a hostile shard is a defect, not an allocation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tmor import fsio
from tmor.shards.codec import REQUIRED_MEMBERS
from tmor.shards.index import INDEX_NAME, shard_urls
from tmor.shards.tario import UnsafeTarError, iter_tar_samples
from tmor.skeleton.npz import load_npy, read_npz


@dataclass
class ValidationReport:
    shards: int = 0
    samples: int = 0
    defects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.defects

    def summary(self) -> str:
        state = "OK" if self.ok else f"{len(self.defects)} defect(s)"
        return f"{self.shards} shards, {self.samples} samples: {state}"


def _finite(name: str, a: np.ndarray) -> str | None:
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        return f"{name} has NaN or Inf"
    return None


def check_sample(members: dict[str, bytes]) -> tuple[list[str], dict[str, int]]:
    """Defects of one sample's members, and its embedding sizes {"video": Dv, "text": Dt}."""
    bad: list[str] = []
    dims: dict[str, int] = {}
    missing = [m for m in REQUIRED_MEMBERS if m not in members]
    if missing:
        return [f"missing members {missing}"], dims
    extra = set(members) - set(REQUIRED_MEMBERS) - {"video.npy"}
    if extra:
        bad.append(f"unexpected members {sorted(extra)}")
    try:
        arrays = read_npz(members["pose.npz"])
    except Exception as e:  # noqa: BLE001 - any decoding failure is a defect
        return [f"pose.npz unreadable: {e}"], dims
    kp, sc = arrays.get("keypoint"), arrays.get("keypoint_score")
    if kp is None or sc is None:
        return ["pose.npz lacks keypoint or keypoint_score"], dims
    if kp.dtype != np.float32 or kp.ndim != 4 or kp.shape[-1] not in (2, 3):
        bad.append(f"keypoint {kp.dtype}{kp.shape}, expected float32 (M,T,V,2|3)")
    if sc.dtype != np.float32 or sc.shape != kp.shape[:3]:
        bad.append(f"keypoint_score {sc.dtype}{sc.shape}, expected float32 {kp.shape[:3]}")
    k3 = arrays.get("keypoint_3d")
    if k3 is not None and (k3.dtype != np.float32 or k3.shape != (*kp.shape[:3], 3)):
        bad.append(f"keypoint_3d {k3.dtype}{k3.shape}, expected float32 {(*kp.shape[:3], 3)}")
    for name, a in (("keypoint", kp), ("keypoint_score", sc), ("keypoint_3d", k3)):
        msg = _finite(name, a) if a is not None else None
        if msg:
            bad.append(msg)
    layout = str(arrays["layout"]) if "layout" in arrays else None
    if layout is None or "fps" not in arrays:
        bad.append("pose.npz lacks layout or fps")
    else:
        try:
            from tmor.skeleton.layouts import num_joints

            if kp.ndim == 4 and num_joints(layout) != kp.shape[2]:
                bad.append(f"layout {layout} has {num_joints(layout)} joints, keypoint has "
                           f"{kp.shape[2]}")
        except (ImportError, KeyError, ValueError) as e:
            bad.append(f"unknown layout {layout!r} ({e})")
    for m in ("video.npy", "text.npy"):
        if m not in members:
            continue
        try:
            a = load_npy(members[m])
        except Exception as e:  # noqa: BLE001
            bad.append(f"{m} unreadable: {e}")
            continue
        if a.dtype != np.float16 or a.ndim != 1:
            bad.append(f"{m} {a.dtype}{a.shape}, expected float16 (D,)")
        msg = _finite(m, a)
        if msg:
            bad.append(msg)
        if a.size:
            dims[m.split(".")[0]] = int(a.shape[0])
    try:
        meta = json.loads(members["json"].decode("utf-8"))
        members["txt"].decode("utf-8")
    except (UnicodeDecodeError, ValueError) as e:
        bad.append(f"json or txt unreadable: {e}")
    else:
        if not isinstance(meta, dict):
            bad.append("json is not an object")
        elif bool(meta.get("has_video")) != ("video" in dims):
            bad.append(f"has_video={meta.get('has_video')} but video.npy "
                       f"{'present' if 'video' in dims else 'absent'}")
    return bad, dims


def validate(root: str) -> ValidationReport:
    """Validate ``<root>/triplets`` (or ``root`` itself when it holds the tars)."""
    shard_dir = fsio.join(root, "triplets")
    urls = shard_urls(shard_dir)
    if not urls:
        shard_dir, urls = root, shard_urls(root)
    report = ValidationReport(shards=len(urls))
    if not urls:
        report.defects.append(f"{root}: no triplet shards (NNNNNN.tar) found")
        return report
    where: dict[str, str] = {}
    sizes: dict[str, set[int]] = {"video": set(), "text": set()}
    order: list[str] = []
    for url in urls:
        name = url.rsplit("/", 1)[-1]
        try:
            with fsio.open_url(url, "rb") as f:
                for key, members in iter_tar_samples(f, url):
                    report.samples += 1
                    order.append(key)
                    if key in where:
                        report.defects.append(f"{name}: key {key} also in {where[key]}")
                    where[key] = name
                    bad, dims = check_sample(members)
                    report.defects += [f"{name}: {key}: {b}" for b in bad]
                    for k, d in dims.items():
                        sizes[k].add(d)
        except (UnsafeTarError, OSError) as e:
            report.defects.append(f"{name}: {e}")
    for k, s in sizes.items():
        if len(s) > 1:
            report.defects.append(f"{k} embeddings of different sizes: {sorted(s)}")
    report.defects += _check_index(shard_dir, order)
    return report


def _check_index(shard_dir: str, order: list[str]) -> list[str]:
    from tmor.shards.index import read_index

    if not fsio.exists(fsio.join(shard_dir, INDEX_NAME)):
        return []
    try:
        index = read_index(shard_dir)
    except Exception as e:  # noqa: BLE001
        return [f"{INDEX_NAME} unreadable: {e}"]
    expected = {k: i for i, k in enumerate(order)}
    if index != expected:
        diff = sum(index.get(k) != i for k, i in expected.items()) + len(set(index) - set(order))
        return [f"{INDEX_NAME} disagrees with the shards on {diff} key(s): run write_index"]
    return []


def report_dict(report: ValidationReport) -> dict[str, Any]:
    return {"ok": report.ok, "shards": report.shards, "samples": report.samples,
            "defects": report.defects}
