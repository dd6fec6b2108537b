"""The pose stage on the real clips of ../shared/data/videos with the real YOLO11n-pose weights.

One stage run (module fixture) over the first 3 s of every clip (the whole FallFree fall clip)
at 3 frames/s, plus a corrupt and a non-video sample; the tests read its results.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tmor.errors import ErrorClass, PluginUnavailable
from tmor.pipeline.pose.stage import PoseConfig, PoseStage
from tmor.pipeline.stage import Sample
from tmor.skeleton.npz import decode_pose

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
VIDEOS = DATA / "videos"
YOLO = DATA / "models" / "yolo11n-pose.pt"
KINECT = DATA / "skeletons" / "fallfree"
FULL = {"fallfree_fall_1_55_3.avi"}  # kept whole (the fall is at the end)

pytestmark = pytest.mark.skipif(
    not (VIDEOS.is_dir() and YOLO.is_file()), reason=f"real clips / YOLO weights not in {DATA}"
)


def _clips() -> dict[str, dict[str, str]]:
    with open(VIDEOS / "videos.csv") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def _cut(src: Path, dst: Path, seconds: float) -> bytes:
    """The first ``seconds`` of ``src`` as mp4, stream-copied (no re-encoding)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not on PATH")
    argv = [ffmpeg, "-v", "error", "-y", "-i", str(src), "-t", str(seconds), "-map", "0:v:0",
            "-c", "copy", str(dst)]
    subprocess.run(argv, check=True)
    return dst.read_bytes()


def _sample(key: str, mp4: bytes) -> Sample:
    return Sample(key=key, row={"key": key}, members={"fetch": {"mp4": mp4, "json": b"{}"}})


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clips")
    samples = []
    for name in _clips():
        mp4 = (VIDEOS / name).read_bytes() if name in FULL else _cut(
            VIDEOS / name, tmp / (Path(name).stem + ".mp4"), 3.0
        )
        samples.append(_sample(Path(name).stem, mp4))
    good = (VIDEOS / "kinetics_tai_chi_1.mp4").read_bytes()
    samples.insert(3, _sample("corrupt", good[:4000] + bytes(range(256)) * 64))
    samples.insert(7, _sample("notvideo", b"key,label\nabc,tai chi\n" * 50))
    stage = PoseStage(PoseConfig(model=str(YOLO), fps=3.0, imgsz=480, batch_size=16,
                                 clips_in_flight=3, max_persons=2))
    stage.setup()
    try:
        out = {r.key: r for r in stage.process(iter(samples))}
    finally:
        stage.teardown()
    assert len(out) == len(samples)  # one result per sample
    return out


def test_bad_inputs_are_bad_input_while_the_rest_commit(results):
    for key in ("corrupt", "notvideo"):
        assert not results[key].ok
        assert results[key].error.error_class is ErrorClass.BAD_INPUT
    assert sum(r.ok for r in results.values()) == len(_clips())


def test_people_found_in_every_clip_with_the_contract_arrays(results):
    for name in _clips():
        r = results[Path(name).stem]
        assert r.ok and "no_person" not in r.flags, name
        p = decode_pose(r.members["pose.npz"])
        m, t = p["keypoint"].shape[:2]
        assert p["keypoint"].shape == (m, t, 17, 2) and p["keypoint"].dtype == np.float32
        assert p["keypoint_score"].shape == (m, t, 17) and p["box"].shape == (m, t, 4)
        assert p["track_id"].shape == (m,) and p["track_id"].dtype == np.int64
        assert p["frame_index"].shape == (t,) and np.all(np.diff(p["frame_index"]) > 0)
        assert p["layout"] == "coco17" and p["backend"] == "ultralytics"
        assert len(p["model_sha256"]) == 64 and 2.5 <= p["fps"] <= 3.5
        h, w = p["img_shape"]
        seen = p["keypoint_score"] > 0.5
        assert seen.any(), name
        xy = p["keypoint"][seen]  # keypoints in the clip's own pixels
        assert xy[:, 0].max() <= w * 1.05 and xy[:, 1].max() <= h * 1.05, name
        rec = r.record
        assert rec["frames"] == t and rec["persons"] == m >= 1
        assert rec["frames_with_person"] >= 0.8 * t, (name, rec)
        assert 0.3 < rec["mean_score"] <= 1.0


def _hip_x(p: dict) -> np.ndarray:
    """(M, T) mean x of the two hips; NaN where the track is absent."""
    x = p["keypoint"][:, :, 11:13, 0].mean(-1)
    return np.where(p["keypoint_score"][:, :, 11:13].min(-1) > 0, x, np.nan)


def test_two_person_clips_give_two_tracks_that_do_not_swap(results):
    for name, row in _clips().items():
        if row["people"] != "2":
            continue
        p = decode_pose(results[Path(name).stem].members["pose.npz"])
        assert p["keypoint"].shape[0] == 2, name
        x = _hip_x(p)
        both = ~np.isnan(x).any(0)
        assert both.sum() >= 0.7 * x.shape[1], (name, both)
        left = x[0, both] < x[1, both]
        assert left.all() or not left.any(), (name, x.round())  # x-order never flips
        print(f"{name}: tracks {p['track_id'].tolist()} present together in "
              f"{both.sum()}/{x.shape[1]} frames, hip x-order constant")


def _rank(p: dict, i: int) -> float:
    """The stage's selection rule: frames present x mean keypoint score x mean box area."""
    present = np.abs(p["box"][i]).sum(-1) > 0
    box = p["box"][i, present]
    area = np.prod(box[:, 2:] - box[:, :2], axis=-1).mean()
    return present.sum() * p["keypoint_score"][i, present].mean() * area


def test_single_person_clips_have_one_dominant_track(results):
    for name, row in _clips().items():
        if row["people"] != "1":
            continue
        p = decode_pose(results[Path(name).stem].members["pose.npz"])
        present = np.abs(p["box"]).sum(-1) > 0
        assert present[0].sum() >= 0.8 * present.shape[1], name
        ranks = [_rank(p, i) for i in range(present.shape[0])]
        assert ranks == sorted(ranks, reverse=True)
        if len(ranks) > 1:  # a second kept track (a false positive, a passer-by) is brief; not
            # its rank: a fallen body's second box is wide, and area weighs in the rank
            assert present[1].sum() <= 0.5 * present[0].sum(), (name, present.sum(1), ranks)


def _kinect(name: str) -> np.ndarray:
    rows = list(csv.reader(open(KINECT / name)))
    return np.array([[float(v) for v in r[1:4]] for r in rows], np.float32).reshape(-1, 25, 3)


def test_fallfree_hip_trajectory_matches_the_kinect_skeleton(results):
    if not KINECT.is_dir():
        pytest.skip(f"FallFree Kinect skeletons not found at {KINECT}")
    p = decode_pose(results["fallfree_fall_1_55_3"].members["pose.npz"])
    kin = _kinect("Fall-1-55-3_Skeleton.csv")  # (175, 25, 3), same frames as the video
    idx = p["frame_index"]
    assert kin.shape[0] == 175 and idx.max() < 175
    hip_px = p["keypoint"][0, :, 11:13, 1].mean(-1)  # image y, downwards
    hip_kinect = kin[idx, 0, 1]  # spine base height, upwards (metres)
    ok = p["keypoint_score"][0, :, 11:13].min(-1) > 0
    r = np.corrcoef(-hip_px[ok], hip_kinect[ok])[0, 1]
    print(f"FallFree fall 1-55-3: corr(video hip height, Kinect spine-base height) = {r:.3f} "
          f"over {ok.sum()} frames")
    assert r > 0.8


def test_unknown_backend_missing_model_and_2d_lift_fail_at_setup(tmp_path):
    with pytest.raises(PluginUnavailable, match="unknown pose backend"):
        PoseStage(PoseConfig(backend="openpose")).setup()
    with pytest.raises(PluginUnavailable, match="not found"):
        PoseStage(PoseConfig(model=str(tmp_path / "nope-pose.pt"))).setup()
    with pytest.raises(PluginUnavailable, match="lift 3d"):
        PoseStage(PoseConfig(model=str(YOLO), lift="3d")).setup()
    with pytest.raises(PluginUnavailable, match="pip install rtmlib"):
        PoseStage(PoseConfig(backend="rtmlib", model=str(tmp_path / "rtmo.onnx"))).setup()
    with pytest.raises(PluginUnavailable, match="mim install"):
        PoseStage(PoseConfig(backend="mmpose")).setup()
