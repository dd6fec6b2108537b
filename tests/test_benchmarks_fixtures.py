"""Benchmark importers on fixtures written by the documented formats (FORMATS.md) where no
native file is available: UAV-Human skeleton txt, UTKinect joints + actionLabel, PKU-MMD label
and split files, Charades skeletons joined with the real annotation JSON; and the CLI."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tmor.cli.data import app as data_app
from tmor.shards.exporters import iter_triplets
from tmor.skeleton import layouts as L

DATA = Path(os.environ.get("TMOR_SHARED_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def write_uav(path: Path, frames: list[list[np.ndarray]]) -> None:
    """UAV-Human skeleton txt: frames of bodies of (17, 3) joints, 12 fields a joint line."""
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for b in bodies:
            out += ["000 0 0 0 0 0 0 0 0 0", "17"]
            out += [" ".join(f"{v:.6f}" for v in (*j, 0, 0, 0, 0, 0, 0, 0, 0, 2)) for j in b]
    path.write_text("\n".join(out) + "\n")


def test_uav_human_txt_keeps_empty_frames_and_two_bodies(tmp_path):
    from tmor.shards.benchmarks.uav_human import import_uav_human

    rng = np.random.default_rng(0)
    a, b = rng.uniform(10, 600, (2, 4, 17, 3))
    name = "P070S01G10B00H10UC102000LC092000A031R0_09131758"
    write_uav(tmp_path / f"{name}.txt", [[a[0]], [], [a[2], b[2]], [a[3]]])
    write_uav(tmp_path / "P001S00G10B00H10UC022000LC021000A000R0_08241716.txt", [[a[0]]])
    root = str(tmp_path / "c")
    summary = import_uav_human([str(tmp_path)], root)
    assert summary["split_counts"] == {"csv1_train": 1, "csv1_test": 1, "csv2_train": 1,
                                       "csv2_test": 1}
    t = next(x for x in iter_triplets(root) if x.meta["frame_dir"] == name)
    assert t.layout == "coco17" and t.keypoint.shape == (2, 4, 17, 2) and t.label == "A031"
    np.testing.assert_allclose(t.keypoint[0, 2], a[2, :, :2], atol=1e-5)
    np.testing.assert_allclose(t.keypoint[1, 2], b[2, :, :2], atol=1e-5)
    assert t.keypoint_score[:, 1].sum() == 0 and t.keypoint_score[1, 0].sum() == 0
    assert t.meta["ids"]["person"] == 70 and t.meta["splits"] == ["csv1_train", "csv2_train"]


def write_utkinect(folder: Path) -> tuple[dict[str, np.ndarray], Path]:
    """Two UTKinect sequences (s01 train, s02 test) with a duplicate frame id, and the label
    file with a NaN action and trailing spaces, as FORMATS.md section 7 describes."""
    rng = np.random.default_rng(1)
    seqs = {}
    for seq in ("s01_e01", "s02_e01"):
        ids = np.arange(100, 160)
        ids[10] = ids[9]  # a repeated frame id
        xyz = rng.normal(0, 0.3, (60, 20, 3)).astype(np.float32) + [0, 0, 2.5]
        xyz[:, 3, 1] += 0.8  # head up
        rows = np.concatenate([ids[:, None], xyz.reshape(60, 60)], 1)
        np.savetxt(folder / f"joints_{seq}.txt", rows, fmt="%.6g")
        back = np.loadtxt(folder / f"joints_{seq}.txt")  # the values as written
        seqs[seq] = (ids, back[:, 1:].reshape(60, 20, 3).astype(np.float32))
    (folder / "actionLabel.txt").write_text(
        "s01_e01\nwalk: 100 129  \nsitDown: 130 159\npickUp: NaN NaN \n"
        "s02_e01\nwalk: 105 140\nsitDown: 141 159\n")
    return seqs, folder / "actionLabel.txt"


def import_utkinect(tmp_path: Path, root: str):
    """UTKinect-style files written under ``tmp_path`` and imported into ``root`` through the
    CLI -> (the sequences as written, the CLI result)."""
    seqs, labels = write_utkinect(tmp_path)
    r = CliRunner().invoke(data_app, ["import", "--format", "kinect_v1", str(tmp_path),
                                      "--annotations", str(labels), "--root", root])
    assert r.exit_code == 0, r.output
    return seqs, r


def test_kinect_v1_import_validate_export_round_trip_exactly(tmp_path):
    root = str(tmp_path / "corpus")
    seqs, r = import_utkinect(tmp_path, root)
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["samples"] == 4 and summary["dropped"] == {"action without frames (NaN)": 1}
    r = CliRunner().invoke(data_app, ["validate", "--root", root])
    assert r.exit_code == 0 and "4 samples: OK" in r.output, r.output
    pkl = str(tmp_path / "ut.pkl")
    r = CliRunner().invoke(data_app, ["export", "--format", "pyskl", "--root", root,
                                      "--out", pkl])
    assert r.exit_code == 0, r.output
    data = pickle.loads(Path(pkl).read_bytes())
    anns = {a["frame_dir"]: a for a in data["annotations"]}  # the names UTKinect gives them
    assert set(anns) == {t.meta["frame_dir"] for t in iter_triplets(root)}
    ids, xyz = seqs["s01_e01"]
    walk = anns["s01_e01_walk"]
    rows = (ids >= 100) & (ids <= 129)
    assert rows.sum() == 30  # ids 100..129 with 110 replaced by a second 109
    assert walk["layout"] == "kinect_v1" and walk["keypoint"].shape == (1, 30, 20, 3)
    np.testing.assert_array_equal(walk["keypoint"][0], xyz[rows])  # metres, exactly
    assert sorted(data["split"]) == ["xsub_test", "xsub_train"]
    assert len(data["split"]["xsub_train"]) == 2 and len(data["split"]["xsub_test"]) == 2
    assert set(data["split"]["xsub_train"]) | set(data["split"]["xsub_test"]) == set(anns)
    back = str(tmp_path / "back")  # and the pickle imports again to the same arrays
    r = CliRunner().invoke(data_app, ["import", pkl, "--layout", "kinect_v1", "--root", back])
    assert r.exit_code == 0, r.output
    again = {t.key: t for t in iter_triplets(back)}
    for t in iter_triplets(root):
        np.testing.assert_array_equal(again[t.key].keypoint_3d, t.keypoint_3d)
        np.testing.assert_array_equal(again[t.key].keypoint_score, t.keypoint_score)


def test_import_of_20_joint_arrays_as_coco17_is_refused_before_writing(tmp_path):
    rng = np.random.default_rng(2)
    anns = [{"frame_dir": f"v{i}", "label": 0, "total_frames": 8,
             "keypoint": rng.normal(size=(1, 8, 20, 3)).astype(np.float32)} for i in range(3)]
    pkl = tmp_path / "k20.pkl"
    pkl.write_bytes(pickle.dumps({"split": {"train": ["v0"]}, "annotations": anns}))
    root = tmp_path / "corpus"
    r = CliRunner().invoke(data_app, ["import", str(pkl), "--layout", "coco17",
                                      "--root", str(root)])
    assert r.exit_code == 2
    assert "20 joints" in r.output and "kinect_v1" in r.output and "coco17" in r.output
    assert not root.exists() or not any(root.rglob("*"))  # nothing written
    r = CliRunner().invoke(data_app, ["import", str(pkl), "--layout", "kinect20",
                                      "--root", str(root)])
    assert r.exit_code == 0, r.output
    assert {t.layout for t in iter_triplets(str(root))} == {"kinect20"}


def test_pku_mmd_labels_and_split_files(tmp_path):
    from tmor.shards.benchmarks.pku_mmd import import_pku_mmd

    rng = np.random.default_rng(3)
    for vid in ("0002-L", "0002-M"):
        a = rng.normal(0, 0.3, (50, 150))
        a[:, 75:] = 0  # person 2 absent
        np.savetxt(tmp_path / f"{vid}.txt", a, fmt="%f")
    lab = tmp_path / "labels"
    lab.mkdir()
    (lab / "0002-L.txt").write_text("51,0,9,1\n3,20,60,2\n")
    (lab / "0002-M.txt").write_text("1,5,10,1\n")
    (tmp_path / "cross-view.txt").write_text(
        "Training videos: \n0002-L, 0003-L\nValidataion videos:\n0002-M\n")
    root = str(tmp_path / "c")
    summary = import_pku_mmd([str(tmp_path / "0002-L.txt"), str(tmp_path / "0002-M.txt")], root,
                             annotations=[str(lab)], splits=[str(tmp_path / "cross-view.txt")])
    assert summary["split_counts"] == {"xview_test": 1, "xview_train": 1}
    t = {x.meta["frame_dir"]: x for x in iter_triplets(root)}
    assert t["0002-L"].meta["segments"] == [[50, 0, 10], [2, 20, 50]]  # 0-based, clipped
    assert t["0002-L"].keypoint.shape == (2, 50, 25, 2) and t["0002-L"].layout == "ntu25"
    assert t["0002-L"].keypoint_score[1].sum() == 0 and t["0002-M"].meta["splits"] == [
        "xview_test"]
    from tmor.shards.exporters import export_pyskl
    from tmor.train.data import load_pyskl_split

    pkl = str(tmp_path / "pku.pkl")
    export_pyskl(root, pkl)
    back = load_pyskl_split(pkl, "xview_train", "ntu25")
    assert len(back.classes) == 51 and back.samples[0].segments == [(50, 0, 10), (2, 20, 50)]
    assert back.samples[0].keypoint_3d.shape == (2, 50, 25, 3)


def test_charades_joins_pose_files_with_the_real_annotations_in_frames(tmp_path):
    from tmor.shards.benchmarks.charades import import_charades
    from tmor.skeleton.npz import encode_pose

    ann_path = DATA / "benchmarks" / "charades" / "charades.json"
    if not ann_path.is_file():
        pytest.skip(f"real Charades annotations not found at {ann_path}")
    ann = json.loads(ann_path.read_text())
    vid = "7UPGT"  # 23.21 s, actions up to 24.0 s (past the end)
    fps, t = 24.0, 600
    kp = np.random.default_rng(4).uniform(0, 300, (1, t, 17, 2))
    (tmp_path / f"{vid}.pose.npz").write_bytes(
        encode_pose(kp, np.ones((1, t, 17)), "coco17", fps))
    root = str(tmp_path / "c")
    summary = import_charades([str(tmp_path)], root, annotations=[str(ann_path)])
    assert summary["split_counts"] == {"train": 1, "test": 0}
    (tr,) = iter_triplets(root)
    segs = {tuple(s) for s in tr.meta["segments"]}
    assert (143, 0, 120) in segs  # 0.0-5.0 s at 24 fps
    limit = int(np.ceil(ann[vid]["duration"] * fps))  # 558 frames of video
    assert max(e for _, _, e in segs) == limit == 558
    assert len(tr.meta["classes"]) == 157


def test_layouts_kinect_v1_lcrnet13_penn13_convert_to_coco17_and_unik17():
    rng = np.random.default_rng(5)
    for name in ("kinect_v1", "lcrnet13", "penn13"):
        v = L.num_joints(name)
        kp = rng.normal(size=(2, 5, v, 3)).astype(np.float32)
        sc = np.ones((2, 5, v), np.float32)
        src = L.JOINTS[name]
        coco, csc = L.convert(kp, sc, name, "coco17")
        c = L.JOINTS["coco17"]
        for j in ("left_shoulder", "right_wrist", "left_hip", "right_ankle"):
            np.testing.assert_array_equal(coco[..., c.index(j), :], kp[..., src.index(j), :])
        np.testing.assert_array_equal(coco[..., c.index("nose"), :],
                                      kp[..., src.index("head"), :])
        assert L.missing(name, "coco17") == ["left_eye", "right_eye", "left_ear", "right_ear"]
        assert (csc[..., 1:5] == 0).all() and (coco[..., 1:5, :] == 0).all()
        assert (csc[..., 5:] == 1).all() and L.synthesized(name, "coco17") == ["nose"]
        unik, usc = L.convert(kp, sc, name, "unik17")
        assert L.missing(name, "unik17") == [] and (usc == 1).all()
        u = L.JOINTS["unik17"]
        np.testing.assert_array_equal(unik[..., u.index("head"), :], kp[..., src.index("head"), :])
    assert L.num_joints("kinect20") == 20 and L.layouts_with(13) == ["lcrnet13", "penn13"]
    k = L.JOINTS["kinect_v1"]
    kp = rng.normal(size=(1, 3, 20, 3)).astype(np.float32)
    unik, _ = L.convert(kp, None, "kinect_v1", "unik17")
    np.testing.assert_array_equal(unik[..., L.JOINTS["unik17"].index("mid_hip"), :],
                                  kp[..., k.index("hip_center"), :])
    ntu, nsc = L.convert(kp, np.ones((1, 3, 20)), "kinect_v1", "ntu25")
    n = L.JOINTS["ntu25"]
    np.testing.assert_array_equal(ntu[..., n.index("spine_shoulder"), :],
                                  kp[..., k.index("shoulder_center"), :])
    assert (nsc[..., n.index("left_thumb")] == 0).all()


def test_smarthome_ids_splits_cv_classes_and_dropped_clips(tmp_path):
    from tmor.shards.benchmarks.lcrnet import write_lcrnet
    from tmor.shards.benchmarks.smarthome import CV_CLASSES, import_smarthome
    from tmor.train.data import load_shards_split

    rng = np.random.default_rng(6)
    clips = ["Walk_p03_r00_v01_c01", "Walk_p02_r00_v01_c02", "WatchTV_p19_r00_v01_c05",
             "Pour.Fromcup_p03_r00_v01_c01"]
    for name in clips:
        kp = rng.uniform(0, 640, (2, 6, 13, 2)).astype(np.float32)
        score = np.ones((2, 6, 13), np.float32)
        score[1, :3] = 0  # the second person only in the last frames
        score[:, 1] = 0  # nobody in frame 1
        write_lcrnet(str(tmp_path / f"{name}.json"), kp, score)
    root = str(tmp_path / "c")
    summary = import_smarthome([str(tmp_path)], root)  # no lists: membership by ids
    assert summary["dropped"] == {"class Pour.Fromcup outside the 31": 1}
    assert summary["samples"] == 3
    t = {x.meta["frame_dir"]: x for x in iter_triplets(root)}
    assert t["Walk_p03_r00_v01_c01"].meta["splits"] == ["cs_train", "cv1_train", "cv2_train"]
    assert t["Walk_p02_r00_v01_c02"].meta["splits"] == ["cs_test", "cv1_test", "cv2_test"]
    assert t["WatchTV_p19_r00_v01_c05"].meta["splits"] == ["cs_val"]
    w = t["Walk_p03_r00_v01_c01"]
    assert w.keypoint.shape == (2, 6, 13, 2) and w.keypoint_score[:, 1].sum() == 0
    assert w.keypoint_score[1, :3].sum() == 0 and w.keypoint_score[1, 3:].all()
    cv = load_shards_split(root, "cv1_train")
    assert cv.classes == list(CV_CLASSES) and [s.label for s in cv.samples] == [
        CV_CLASSES.index("Walk")]
    cs = load_shards_split(root, "cs_val")
    assert len(cs.classes) == 31 and cs.samples[0].label_name == "WatchTV"
