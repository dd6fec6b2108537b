"""Joint layout converters (pure numpy), checked on real skeletons of ../shared/data/skeletons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tmor.skeleton import layouts as L

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NTU = DATA / "skeletons" / "ntu_sample" / "ntu60_A005_drop.npy"
FSD = DATA / "skeletons" / "fsd10_sample" / "fsd10_class27.npy"


def _ntu() -> np.ndarray:
    if not NTU.is_file():
        pytest.skip(f"real NTU skeleton not found at {NTU}")
    return np.load(NTU).transpose(3, 1, 2, 0).astype(np.float32)  # (C,T,V,M) -> (M,T,V,C)


def test_every_layout_has_unique_joints_and_valid_bones():
    for name, joints in L.JOINTS.items():
        assert len(set(joints)) == len(joints) == L.num_joints(name)
        for a, b in L.bones(name):
            assert 0 <= a < len(joints) and 0 <= b < len(joints) and a != b
    assert L.num_joints("coco17") == L.num_joints("unik17") == L.num_joints("h36m17") == 17
    assert L.num_joints("ntu25") == 25 and L.num_joints("mediapipe33") == 33


def test_ntu25_to_coco17_unik17_h36m17_on_real_kinect_data():
    kp = _ntu()  # (2, 300, 25, 3) metres
    scores = np.ones(kp.shape[:-1], np.float32)
    coco, sc = L.convert(kp, scores, "ntu25", "coco17")
    assert coco.shape == (2, 300, 17, 3) and sc.shape == (2, 300, 17)
    ntu, coco_names = L.JOINTS["ntu25"], L.JOINTS["coco17"]
    for joint in ("left_shoulder", "right_wrist", "left_hip", "right_ankle"):
        assert np.array_equal(coco[..., coco_names.index(joint), :], kp[..., ntu.index(joint), :])
    unik, _ = L.convert(kp, None, "ntu25", "unik17")
    u = L.JOINTS["unik17"]
    assert np.allclose(unik[..., u.index("mid_hip"), :], kp[..., ntu.index("spine_base"), :])
    h36m, _ = L.convert(kp, None, "ntu25", "h36m17")
    assert np.allclose(h36m[..., 0, :], kp[..., 0, :])  # pelvis = spine base
    assert L.synthesized("ntu25", "coco17") == ["nose", "left_eye", "right_eye", "left_ear",
                                                  "right_ear"]
    assert L.synthesized("ntu25", "h36m17") == []


def test_coco17_synthesized_joints_follow_their_rules():
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 500, (3, 7, 17, 2)).astype(np.float32)
    sc = rng.uniform(0.2, 1, (3, 7, 17)).astype(np.float32)
    c = L.JOINTS["coco17"]
    mid_sh = (kp[..., c.index("left_shoulder"), :] + kp[..., c.index("right_shoulder"), :]) / 2
    mid_hip = (kp[..., c.index("left_hip"), :] + kp[..., c.index("right_hip"), :]) / 2
    unik, usc = L.convert(kp, sc, "coco17", "unik17")
    u = L.JOINTS["unik17"]
    assert np.allclose(unik[..., u.index("neck"), :], mid_sh, atol=1e-4)
    assert np.allclose(unik[..., u.index("chest"), :], (mid_sh + mid_hip) / 2, atol=1e-4)
    # a synthesized joint's score is the lowest score of the joints it is built from
    assert np.allclose(usc[..., u.index("neck")],
                       np.minimum(sc[..., c.index("left_shoulder")],
                                  sc[..., c.index("right_shoulder")]))
    assert L.synthesized("coco17", "unik17") == ["head", "neck", "chest", "mid_hip"]
    ntu, _ = L.convert(kp, sc, "coco17", "ntu25")
    n = L.JOINTS["ntu25"]
    assert np.allclose(ntu[..., n.index("spine_shoulder"), :], mid_sh, atol=1e-4)
    assert L.synthesized_mask("coco17", "ntu25").sum() == 13
    h36m, _ = L.convert(kp, sc, "coco17", "h36m17")
    assert np.allclose(h36m[..., 7, :], (mid_sh + mid_hip) / 2, atol=1e-4)  # spine


def test_mediapipe33_and_chained_conversions():
    kp = np.arange(33 * 2, dtype=np.float32).reshape(33, 2)
    coco, _ = L.convert(kp, None, "mediapipe33", "coco17")
    assert np.array_equal(coco[0], kp[0]) and np.array_equal(coco[11], kp[23])  # nose, l_hip
    unik, _ = L.convert(kp, None, "mediapipe33", "unik17")  # through coco17
    direct, _ = L.convert(coco, None, "coco17", "unik17")
    assert np.allclose(unik, direct)
    assert "neck" in L.synthesized("mediapipe33", "unik17")
    ntu_to_ntu = L.convert(kp[:25], None, "kinect25", "ntu25")[0]  # an alias: identity
    assert np.array_equal(ntu_to_ntu, kp[:25])
    with pytest.raises(ValueError, match="unknown joint layout"):
        L.convert(kp, None, "mediapipe33", "smpl24")
    with pytest.raises(ValueError, match="joints"):
        L.convert(kp[:17], None, "mediapipe33", "coco17")


def test_openpose25_real_fsd10_to_coco17():
    if not FSD.is_file():
        pytest.skip(f"real FSD-10 skeleton not found at {FSD}")
    arr = np.load(FSD).transpose(3, 1, 2, 0)[:, :50]  # (M, T, V, 3): x, y, confidence
    coco, sc = L.convert(arr[..., :2], arr[..., 2], "openpose25", "coco17")
    op = L.JOINTS["openpose25"]
    assert coco.shape == (1, 50, 17, 2)
    assert np.array_equal(coco[..., 5, :], arr[..., op.index("left_shoulder"), :2])
    assert np.array_equal(sc[..., 16], arr[..., op.index("right_ankle"), 2])
