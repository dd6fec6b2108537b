"""MediaPipe backend (metric 3D) and its agreement with YOLO on a real clip; tracker robustness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tmor.pipeline import video
from tmor.pipeline.pose import get_backend
from tmor.pipeline.pose.stage import PoseConfig, PoseStage
from tmor.pipeline.pose.tracking import Detections, Tracker
from tmor.pipeline.stage import Sample
from tmor.skeleton.npz import decode_pose

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
VIDEOS = DATA / "videos"
YOLO = DATA / "models" / "yolo11n-pose.pt"

pytestmark = pytest.mark.skipif(
    not (VIDEOS.is_dir() and YOLO.is_file()), reason=f"real clips / YOLO weights not in {DATA}"
)


def _run(cfg: PoseConfig, name: str) -> dict:
    stage = PoseStage(cfg)
    stage.setup()
    mp4 = (VIDEOS / name).read_bytes()
    sample = Sample(key="k", row={}, members={"fetch": {"mp4": mp4, "json": b"{}"}})
    try:
        (result,) = list(stage.process(iter([sample])))
    finally:
        stage.teardown()
    assert result.ok, result.error
    return decode_pose(result.members["pose.npz"])


@pytest.fixture(scope="module")
def tai_chi():
    pytest.importorskip("mediapipe")
    mp = _run(PoseConfig(backend="mediapipe", fps=2.0, lift="3d"), "kinetics_tai_chi_1.mp4")
    yolo = _run(PoseConfig(model=str(YOLO), fps=2.0, imgsz=480), "kinetics_tai_chi_1.mp4")
    return mp, yolo


def test_mediapipe_3d_world_landmarks_have_plausible_bone_lengths(tai_chi):
    mp, _ = tai_chi
    assert mp["backend"] == "mediapipe" and mp["layout"] == "coco17"
    k3 = mp["keypoint_3d"]
    assert k3.shape == (*mp["keypoint"].shape[:3], 3) and k3.dtype == np.float32
    seen = np.abs(k3[0]).sum((-1, -2)) > 0
    assert seen.sum() >= 0.8 * len(seen)
    shoulders = np.linalg.norm(k3[0, seen, 5] - k3[0, seen, 6], axis=-1)
    thigh = np.linalg.norm(k3[0, seen, 11] - k3[0, seen, 13], axis=-1)
    print(f"mediapipe 3D: median shoulder width {np.median(shoulders):.3f} m, "
          f"thigh {np.median(thigh):.3f} m")
    assert 0.25 <= np.median(shoulders) <= 0.55
    assert 0.25 <= np.median(thigh) <= 0.60


def test_backends_agree_on_the_same_person(tai_chi):
    mp, yolo = tai_chi
    assert np.array_equal(mp["frame_index"], yolo["frame_index"])
    both = (mp["keypoint_score"][0] > 0.5) & (yolo["keypoint_score"][0] > 0.5)  # (T, 17)
    assert both.sum() > 100
    dist = np.linalg.norm(mp["keypoint"][0] - yolo["keypoint"][0], axis=-1)[both]
    body = np.median(yolo["box"][0, :, 3] - yolo["box"][0, :, 1])
    print(f"ultralytics vs mediapipe on kinetics_tai_chi_1 (340x256): mean distance "
          f"{dist.mean():.1f} px, median {np.median(dist):.1f} px over {both.sum()} joints "
          f"(person height ~{body:.0f} px)")
    assert dist.mean() < 0.1 * body


def test_tracker_survives_missed_detections_on_real_detections():
    backend = get_backend("ultralytics", str(YOLO), imgsz=480)
    backend.load()
    frames = [f for _, f in video.iter_frames(VIDEOS / "ntu_two_person_hug.mp4", fps=4,
                                              size=(480, 270))][:8]
    dets = backend.infer(frames)
    assert all(len(d) >= 2 for d in dets)
    order = [np.argsort(d.boxes[:, 0])[:2] for d in dets]  # left, right person

    def only(d: Detections, keep: list[int]) -> Detections:
        return Detections(d.boxes[keep], d.box_scores[keep], d.keypoints[keep],
                          d.keypoint_scores[keep])

    tracker = Tracker(max_age=3)
    ids = []
    for t, (d, o) in enumerate(zip(dets, order, strict=True)):
        keep = [int(o[1])] if t in (3, 4) else [int(o[0]), int(o[1])]  # left person missed
        got = tracker.update(only(d, keep))
        ids.append(got if t not in (3, 4) else [None, got[0]])
    assert len(tracker.tracks) == 2  # no new identity after the gap
    assert all(i[0] == ids[0][0] for i in ids if i[0] is not None)
    assert all(i[1] == ids[0][1] for i in ids)
