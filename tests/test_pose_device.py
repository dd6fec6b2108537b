"""The device pose path (engine ``tensor``) gives the skeletons of the previous path (engine
``host``: host padding per shape, ultralytics' per-image NMS), on the shared clips as fetch leaves
them; and the same bytes however the decode workers interleave the clips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _fetched import fetch_encode

from tmor.pipeline.pose.stage import PoseConfig, PoseStage
from tmor.pipeline.stage import Sample
from tmor.skeleton.npz import decode_pose

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
YOLO = DATA / "models" / "yolo11n-pose.pt"
CLIPS = ["basketball_two_person.mp4", "ntu_two_person_hug.mp4", "kinetics_tai_chi_1.mp4",
         "two_person_handover_portrait.mp4", "ucf101_archery.avi"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not (YOLO.is_file() and all((DATA / "videos" / c).is_file() for c in CLIPS)),
    reason=f"real clips / YOLO weights not in {DATA}")


def _fetched(src: Path, dst: Path) -> bytes:
    return fetch_encode(src, dst, 1.5).read_bytes()


def _run(samples: list[Sample], engine: str, **kw) -> dict[str, dict]:
    cfg = PoseConfig(model=str(YOLO), device="cpu", fps=4.0, imgsz=640, max_persons=2,
                     backend_options={"engine": engine}, **kw)
    stage = PoseStage(cfg)
    stage.setup()
    try:
        out = {r.key: r for r in stage.process(iter(samples))}
    finally:
        stage.teardown()
    assert all(r.ok for r in out.values()), {k: r.error for k, r in out.items() if not r.ok}
    return {k: decode_pose(r.members["pose.npz"]) for k, r in out.items()}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fetched")
    samples = [Sample(Path(c).stem, {}, {}, {"fetch": {"mp4": _fetched(
        DATA / "videos" / c, tmp / (Path(c).stem + ".mp4")), "json": b"{}"}}) for c in CLIPS]
    host = _run(samples, "host", batch_size=8, decode_workers=1)
    device = _run(samples, "tensor", batch_size=16, decode_workers=2)
    return host, device


def test_device_path_gives_todays_skeletons(both):
    host, device = both
    assert host.keys() == device.keys()
    for key in host:
        a, b = host[key], device[key]
        assert np.array_equal(a["frame_index"], b["frame_index"]), key
        assert a["keypoint"].shape == b["keypoint"].shape, key
        present = (np.abs(a["box"]).sum(-1) > 0) & (np.abs(b["box"]).sum(-1) > 0)  # (M, T)
        assert present.sum() >= 0.9 * (np.abs(a["box"]).sum(-1) > 0).sum(), key
        seen = present[..., None] & (a["keypoint_score"] > 0.3)  # matched joints
        d = np.linalg.norm(a["keypoint"] - b["keypoint"], axis=-1)[seen]
        ds = np.abs(a["keypoint_score"] - b["keypoint_score"])[seen]
        print(f"{key}: {seen.sum()} joints, max |dxy| {d.max():.3f} px, max |dscore| "
              f"{ds.max():.4f}")
        assert d.max() <= 1.0 and ds.max() <= 0.02, key


def test_device_results_do_not_depend_on_decode_interleaving(both, tmp_path):
    """Other decode parallelism (other frames share each batch): byte-identical pose.npz."""
    from tmor.skeleton.npz import npz_bytes

    _, device = both
    samples = [Sample(Path(c).stem, {}, {}, {"fetch": {"mp4": _fetched(
        DATA / "videos" / c, tmp_path / (Path(c).stem + ".mp4")), "json": b"{}"}})
        for c in CLIPS[:3]]
    again = _run(samples, "tensor", batch_size=16, decode_workers=3, clips_in_flight=2)
    for key, p in again.items():
        assert npz_bytes(p) == npz_bytes(device[key]), key
