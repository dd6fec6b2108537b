"""Importers and exporters over the real skeleton files in ../shared/data/skeletons."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tests._shards_data import import_all, skeleton_files
from tmor.shards.exporters import export_pyskl, export_stgcn, iter_triplets
from tmor.shards.importers import (
    import_pyskl,
    read_kinect_csv,
    read_ntu_npy,
    read_ntu_skeleton,
)
from tmor.shards.validate import validate


def _by_source(root: str) -> dict:
    return {t.meta["source"]: t for t in iter_triplets(root)}


@pytest.mark.parametrize("name", ["Fall-1-19-4_Skeleton.csv", "Fall-1-55-3_Skeleton.csv",
                                  "Non-fall-1-70-3_Skeleton.csv", "Non-fall-2-45-1_Skeleton.csv",
                                  "ntu60_A005_drop.npy", "fsd10_class27.npy"])
def test_import_export_import_round_trip(tmp_path, name):
    from tmor.shards.importers import import_files

    (path,) = [p for p in skeleton_files() if p.name == name]
    first = str(tmp_path / "a")
    import_files([str(path)], first)
    assert validate(first).ok
    pkl = str(tmp_path / "a.pkl")
    export_pyskl(first, pkl)
    second = str(tmp_path / "b")
    import_pyskl(pkl, second)
    (a,) = list(iter_triplets(first))
    (b,) = list(iter_triplets(second))
    assert a.key == b.key and a.label == b.label and a.layout == b.layout and a.fps == b.fps
    np.testing.assert_array_equal(a.keypoint, b.keypoint)
    np.testing.assert_array_equal(a.keypoint_score, b.keypoint_score)
    if a.keypoint_3d is None:
        assert b.keypoint_3d is None
    else:
        np.testing.assert_array_equal(a.keypoint_3d, b.keypoint_3d)
    assert a.caption == b.caption == f"a person {a.label}."
    assert a.video is None and a.text is None and a.meta["has_video"] is False


def test_imported_arrays_match_the_files(tmp_path):
    root = str(tmp_path)
    summary = import_all(root, samples_per_shard=2)
    assert summary["samples"] == 6 and summary["shards"] == 3
    got = _by_source(root)
    files = {p.name: p for p in skeleton_files()}

    ntu = got[str(files["ntu60_A005_drop.npy"])]
    raw = np.load(files["ntu60_A005_drop.npy"])  # (C, T, V, M), zero-padded to 300 x 2
    assert ntu.keypoint_3d.shape == (1, 72, 25, 3) and ntu.label == "drop"
    np.testing.assert_array_equal(ntu.keypoint_3d[0], raw[:, :72, :, 0].transpose(1, 2, 0))
    assert not raw[:, 72:].any() and not raw[..., 1].any()

    fsd = got[str(files["fsd10_class27.npy"])]
    raw = np.load(files["fsd10_class27.npy"])
    assert fsd.layout == "openpose25" and fsd.keypoint_3d is None
    t = fsd.keypoint.shape[1]
    np.testing.assert_allclose(fsd.keypoint_score[0], raw[2, :t, :, 0], rtol=1e-6)
    np.testing.assert_allclose(fsd.keypoint[0], raw[:2, :t, :, 0].transpose(1, 2, 0), rtol=1e-6)

    csv = files["Fall-1-55-3_Skeleton.csv"]
    kin = got[str(csv)]
    lines = csv.read_text().splitlines()
    assert kin.keypoint_3d.shape == (1, len(lines) // 25, 25, 3) and kin.label == "falling"
    first = lines[0].split(",")
    np.testing.assert_allclose(kin.keypoint_3d[0, 0, 0], [float(v) for v in first[1:4]])
    states = np.array([r.rsplit(",", 1)[1] for r in lines]).reshape(-1, 25)
    np.testing.assert_array_equal(kin.keypoint_score[0] == 1.0, states == "TRACKED")


def test_ntu_skeleton_text_matches_the_npy(tmp_path):
    """Write the real NTU sequence in the .skeleton text format and read it back."""
    (path,) = [p for p in skeleton_files() if p.name.startswith("ntu60")]
    kp3, _ = read_ntu_npy(str(path))  # (1, 72, 25, 3)
    lines = [str(kp3.shape[1])]
    for t in range(kp3.shape[1]):
        lines += ["1", "72057594037931101 0 1 1 1 1 0 0.1 0.2 2", "25"]
        for v in range(25):
            x, y, z = kp3[0, t, v]
            lines.append(f"{x:.7f} {y:.7f} {z:.7f} 0 0 0 0 0 0 0 0 2")
    skel = tmp_path / "S001C001P001R001A005.skeleton"
    skel.write_text("\n".join(lines) + "\n")
    got, score = read_ntu_skeleton(str(skel))
    np.testing.assert_allclose(got, kp3, atol=1e-6)
    assert (score == 1).all()
    skel.write_text("\n".join(lines[:-10]))
    with pytest.raises(ValueError, match="truncated"):
        read_ntu_skeleton(str(skel))


def test_kinect_csv_rejects_a_partial_frame(tmp_path):
    csv = next(p for p in skeleton_files() if p.suffix == ".csv")
    bad = tmp_path / "Fall-x.csv"
    bad.write_text("\n".join(csv.read_text().splitlines()[:30]))
    with pytest.raises(ValueError, match="not a multiple of 25"):
        read_kinect_csv(str(bad))


def test_pyskl_and_stgcn_exports_have_the_field_s_structure(tmp_path):
    root = str(tmp_path / "c")
    import_all(root)
    pkl = str(tmp_path / "x.pkl")
    export_pyskl(root, pkl)
    with open(pkl, "rb") as f:
        data = pickle.load(f)
    assert set(data) >= {"split", "annotations"}
    assert len(data["annotations"]) == 6 and len(data["split"]["all"]) == 6
    for a in data["annotations"]:
        m, t, v, c = a["keypoint"].shape
        assert a["keypoint"].dtype == np.float32 and c in (2, 3) and a["total_frames"] == t
        assert a["keypoint_score"].shape == (m, t, v)
        assert isinstance(a["label"], int) and data["label_names"][a["label"]] == a["label_name"]
        assert len(a["img_shape"]) == 2 and a["frame_dir"] in data["split"]["all"]

    with pytest.raises(ValueError, match="layouts"):
        export_stgcn(root, str(tmp_path / "d.npy"), str(tmp_path / "d.pkl"))
    summary = export_stgcn(root, str(tmp_path / "d.npy"), str(tmp_path / "d.pkl"),
                           layout="coco17", max_frames=300)
    arr = np.load(tmp_path / "d.npy")
    assert arr.shape == (6, 3, 300, 17, 2) == tuple(summary["shape"]) and arr.dtype == np.float32
    with open(tmp_path / "d.pkl", "rb") as f:
        names, labels, label_names = pickle.load(f)
    assert len(names) == len(labels) == 6 and set(labels) == set(range(len(label_names)))
