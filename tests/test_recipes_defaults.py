"""Benchmark recipes (configs/*.yaml) and the defaults that train on a set with no recipe:
schedule by optimizer steps with a floor, the data's own channels (3D stays 3D) and layout, and
normalization anchored on the layout's real hips and shoulders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tmor.config import build, load_yaml
from tmor.skeleton import layouts as L
from tmor.skeleton import transforms as T

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))

#: split names each importer writes (tmor.shards.benchmarks)
WRITTEN = {
    "penn_action": {"train", "test"},
    "smarthome": {f"{p}_{s}" for p in ("cs", "cv1", "cv2") for s in ("train", "val", "test")},
    "uav_human": {"csv1_train", "csv1_test", "csv2_train", "csv2_test"},
    "utkinect": {"xsub_train", "xsub_test"},
    "tsu": {"cs_train", "cs_test", "cv_train", "cv_test"},
    "charades": {"train", "test"},
    "pku_mmd": {"xsub_train", "xsub_test", "xview_train", "xview_test"},
}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_recipe_builds_its_config_and_names_splits_the_importer_writes(path):
    from tmor.train.classify import ClassifyConfig
    from tmor.train.detect import DetectConfig

    sections = load_yaml(path)
    assert sections and set(sections) <= {"finetune", "linear_probe", "detect"}
    bench = next(b for b in WRITTEN if path.stem.startswith(b))
    for name, section in sections.items():
        cfg = build(DetectConfig if name == "detect" else ClassifyConfig, section,
                    {"data": "x"})
        assert {cfg.split_train, cfg.split_test} <= WRITTEN[bench], path
        if cfg.layout:
            L.num_joints(cfg.layout)  # a known layout
        if name != "detect":
            want = "mean_class_accuracy" if bench == "smarthome" else "top1"
            assert cfg.metric == want


def test_schedule_has_a_step_floor_for_small_sets_and_keeps_given_epochs():
    from tmor.train.classify import ClassifyConfig, lr_factor, resolve_schedule

    # ~100 training sequences at batch 32: 30 epochs would be ~90 steps
    assert resolve_schedule(ClassifyConfig(), 100) == (375, 1500)  # 4 steps an epoch
    assert resolve_schedule(ClassifyConfig(), 40_000) == (30, 30 * 1250)
    assert resolve_schedule(ClassifyConfig(epochs=8), 100) == (8, 32)
    assert resolve_schedule(ClassifyConfig(epochs=2, batch_size=8), 17) == (2, 4)  # 1 left over
    f = [lr_factor(s, 100, 0.05) for s in range(100)]
    assert f[0] == pytest.approx(0.2) and f[4] == pytest.approx(1.0)
    assert max(f) == pytest.approx(1.0) and f[-1] < 0.01 and all(a >= b for a, b in
                                                                  zip(f[4:], f[5:], strict=False))


def test_3d_data_stays_3d_and_keeps_its_own_layout():
    from tmor.train.classify import ClassifyConfig, resolve_spec
    from tmor.train.data import SkeletonSample, data_channels, sample_to_input

    rng = np.random.default_rng(0)
    kp3 = rng.normal(size=(1, 40, 20, 3)).astype(np.float32) + [0, 0, 3]
    s = SkeletonSample("a", kp3[..., :2], np.ones((1, 40, 20), np.float32), "kinect_v1",
                       keypoint_3d=kp3)
    assert data_channels([s]) == 3
    two = SkeletonSample("b", kp3[..., :2], np.ones((1, 40, 20), np.float32), "kinect_v1")
    assert data_channels([s, two]) == 2
    spec = resolve_spec(ClassifyConfig(max_persons=1), None, data_channels([s]))
    assert spec.channels == 3 and spec.layout is None
    x = sample_to_input(s, spec)
    assert x.shape == (3, 64, 20, 1)  # (C, T, V, M): 3D, Kinect v1's 20 joints


def _standing_kinect_v1() -> np.ndarray:
    """A Kinect v1 body (metres): hips at z 3 m, 0.5 m of torso; hands far out to the side."""
    names = L.JOINTS["kinect_v1"]
    pos = {"hip_center": (0, 0), "spine": (0, 0.25), "shoulder_center": (0, 0.5),
           "head": (0, 0.7), "left_hip": (-0.1, 0), "right_hip": (0.1, 0),
           "left_shoulder": (-0.2, 0.5), "right_shoulder": (0.2, 0.5),
           "left_elbow": (-0.5, 0.5), "right_elbow": (0.5, 0.5), "left_wrist": (-0.8, 0.5),
           "right_wrist": (0.8, 0.5), "left_hand": (-0.9, 0.5), "right_hand": (0.9, 0.5),
           "left_knee": (-0.1, -0.45), "right_knee": (0.1, -0.45),
           "left_ankle": (-0.1, -0.9), "right_ankle": (0.1, -0.9),
           "left_foot": (-0.1, -0.95), "right_foot": (0.1, -0.95)}
    xyz = np.array([[*pos[n], 3.0] for n in names], np.float32)
    return np.repeat(xyz[None, None], 8, axis=1) + [1.0, 0.2, 0]  # (1, 8, 20, 3)


def test_normalization_is_anchored_on_the_layouts_real_hips_and_shoulders():
    kp3 = _standing_kinect_v1()
    score = np.ones(kp3.shape[:3], np.float32)
    assert T.anchors("kinect_v1") == (12, 16, 4, 8) == T.anchors("kinect20")
    out = T.normalize(kp3, score, "kinect_v1", dims=3)
    names = L.JOINTS["kinect_v1"]
    mid_hip = (out[0, :, names.index("left_hip")] + out[0, :, names.index("right_hip")]) / 2
    mid_sho = (out[0, :, names.index("left_shoulder")] + out[0, :, names.index("right_shoulder")]
               ) / 2
    np.testing.assert_allclose(mid_hip, 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(mid_sho - mid_hip, axis=-1), 1.0, rtol=1e-5)
    # the bug: the same arrays read as coco17 centre on a hand and an elbow
    wrong = T.normalize(kp3, score, "coco17", dims=3)
    wrong_hip = (wrong[0, :, names.index("left_hip")] + wrong[0, :, names.index("right_hip")]) / 2
    assert np.abs(wrong_hip).max() > 0.3
    for name, v in (("lcrnet13", 13), ("penn13", 13)):
        lh, rh, ls, rs = T.anchors(name)
        j = L.JOINTS[name]
        assert (j[lh], j[rh], j[ls], j[rs]) == ("left_hip", "right_hip", "left_shoulder",
                                                "right_shoulder") and len(j) == v
