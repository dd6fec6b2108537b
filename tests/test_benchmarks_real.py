"""Benchmark importers on the real native files of ../shared/data/benchmarks (FORMATS.md)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tmor.shards.exporters import iter_triplets
from tmor.skeleton import layouts as L

#: ../shared/data beside the repository, or $TMOR_SHARED_DATA (a worktree elsewhere)
DATA = Path(os.environ.get("TMOR_SHARED_DATA")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")
BENCH = DATA / "benchmarks"


def need(*parts: str) -> Path:
    p = BENCH.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real benchmark file not found at {p}")
    return p


def test_all_penn_action_files_import_with_15_classes_and_the_official_split(tmp_path):
    from tmor.shards.benchmarks.penn_action import CLASSES, import_penn_action
    from tmor.train.data import load_shards_split

    labels = need("penn_action", "labels")
    root = str(tmp_path / "penn")
    summary = import_penn_action([str(labels)], root)
    assert summary["samples"] == 2326
    assert summary["split_counts"] == {"train": 1258, "test": 1068}
    triplets = list(iter_triplets(root))
    assert Counter(t.label for t in triplets)["squat"] == 231  # FORMATS.md class counts
    assert {t.label for t in triplets} == set(CLASSES) and len(CLASSES) == 15
    assert sum(t.keypoint.shape[1] for t in triplets) == 163_841  # every frame kept
    t = next(x for x in triplets if x.meta["frame_dir"] == "0001")
    assert t.layout == "penn13" and t.keypoint.shape == (1, 151, 13, 2)
    assert t.meta["img_shape"] == [360, 480] and t.meta["splits"] == ["test"]
    assert t.label == "baseball_pitch" and t.meta["ids"]["view"] == "back"
    train = load_shards_split(root, "train")
    test = load_shards_split(root, "test")
    assert len(train.samples) == 1258 and len(test.samples) == 1068
    assert train.classes == test.classes == sorted(CLASSES)
    assert all(s.label >= 0 for s in train.samples + test.samples)


def test_penn_visibility_is_the_score_and_the_joints_are_anatomical(tmp_path):
    from scipy.io import loadmat

    from tmor.shards.benchmarks.penn_action import read_penn_mat

    path = need("penn_action", "labels", "0100.mat")
    r = read_penn_mat(str(path))
    m = loadmat(str(path))
    np.testing.assert_array_equal(r["keypoint"][0, ..., 0], m["x"].astype(np.float32))
    np.testing.assert_array_equal(r["score"][0], m["visibility"].astype(np.float32))
    names = L.JOINTS["penn13"]
    y = r["keypoint"][0, ..., 1]
    ok = r["score"][0] > 0
    head = y[:, names.index("head")][ok[:, 0]]
    ankles = y[:, names.index("left_ankle")][ok[:, names.index("left_ankle")]]
    assert np.median(head) < np.median(ankles)  # image y grows downwards: head above feet


def test_pku_mmd_skeleton_file_gives_1040_frames_of_2x25x3_in_metres(tmp_path):
    from tmor.shards.benchmarks.pku_mmd import import_pku_mmd
    from tmor.shards.import_untrimmed import read_pku_skeleton

    path = need("pku_mmd", "A10N08-L.txt")
    kp3, score = read_pku_skeleton(str(path), drop_empty=False)
    assert kp3.shape == (2, 1040, 25, 3) and score.shape == (2, 1040, 25)
    z = kp3[..., 2][score > 0]
    assert 1.5 < z.min() and z.max() < 3.5  # metres from the sensor
    assert int((score[1].sum(-1) > 0).sum()) == 728  # person 2 present in 728 frames
    names = L.JOINTS["ntu25"]
    head, foot = kp3[0, :, names.index("head"), 1], kp3[0, :, names.index("left_foot"), 1]
    assert np.median(head - foot) > 1.0  # y up, metres: the head over a metre above the foot
    root = str(tmp_path / "pku")
    import_pku_mmd([str(path)], root)
    (t,) = iter_triplets(root)
    assert t.layout == "ntu25" and t.keypoint_3d.shape == (2, 1040, 25, 3)
    assert t.meta["ids"] == {"phase": 2, "a": 10, "n": 8, "view": "L"}


def _coco_to_lcr(kpts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A COCO-17 (T, 17, 2) array built from LCR-Net (head in nose/eyes/ears) -> lcrnet13."""
    coco = L.JOINTS["coco17"]
    idx = [coco.index("nose" if n == "head" else n) for n in L.JOINTS["lcrnet13"]]
    kp = kpts[:, idx][None]
    score = np.repeat((np.abs(kpts).sum((1, 2)) > 0)[None, :, None], 13, 2).astype(np.float32)
    return kp * score[..., None], score


def test_tsu_annotations_align_with_the_skeleton_frame_count(tmp_path):
    from tmor.shards.benchmarks.lcrnet import write_lcrnet
    from tmor.shards.benchmarks.tsu import import_tsu
    from tmor.train.data import frame_targets, load_shards_split

    npz = need("tsu", "P11T13C03_LCRNet2d.npz")
    cs, cv = need("tsu", "smarthome_CS_51.json"), need("tsu", "smarthome_CV_51.json")
    kpts = np.load(npz)["kpts"]
    kp, score = _coco_to_lcr(kpts)
    skel = tmp_path / "results_P11T13C03_lcrnet+v3d.json"
    write_lcrnet(str(skel), kp, score)
    root = str(tmp_path / "tsu")
    summary = import_tsu([str(skel)], root, annotations=[str(cs), str(cv)],
                         classes=str(need("tsu", "Action_list.txt")))
    assert summary["duration_mismatch"] == []
    (t,) = iter_triplets(root)
    ann = json.loads(cs.read_text())["P11T13C03"]
    assert t.keypoint.shape[1] == ann["duration"] == 34_520
    assert int((t.keypoint_score.sum((0, 2)) == 0).sum()) == 18_080  # empty frames kept
    assert sorted(t.meta["splits"]) == ["cs_test", "cv_train"]  # camera 3 trains in CV
    assert t.meta["ids"] == {"subject": 11, "take": 13, "camera": 3}
    assert len(t.meta["classes"]) == 51 and t.meta["classes"][12] == "Stir_coffee/tea"
    c, s, e = ann["actions"][0]
    y = frame_targets(t.meta["segments"], t.keypoint.shape[1], 51)
    assert y[s + 1:e, c].all() and not y[s, c] and not y[e, c]  # start < t < end
    test = load_shards_split(root, "cs_test")
    assert len(test.samples) == 1 and test.classes == t.meta["classes"]


def test_smarthome_split_lists_give_the_documented_counts_and_agree_with_the_ids():
    from tmor.shards.benchmarks.smarthome import (
        CLASSES,
        parse_name,
        read_split_lists,
        splits_from_ids,
    )

    lists = read_split_lists([str(need("toyota_smarthome", "splits"))])
    counts = {k: len(v) for k, v in lists.items()}
    assert counts == {"cs_train": 8831, "cs_val": 1854, "cs_test": 5444, "cv1_train": 1877,
                      "cv1_val": 3539, "cv1_test": 1901, "cv2_train": 7806, "cv2_val": 3539,
                      "cv2_test": 1901}
    names = {n for v in lists.values() for n in v}
    outside = {n for n in names if parse_name(n)["activity"] not in CLASSES}
    assert len(names) == 16_129 and len(outside) == 14
    assert {parse_name(n)["activity"] for n in outside} == {"Pour.Fromcup"}
    member: dict[str, set[str]] = {}
    for split, v in lists.items():
        for n in v:
            member.setdefault(n, set()).add(split)
    for n in names - outside:  # the id rule reproduces every list, CV2 by camera
        assert set(splits_from_ids(parse_name(n))) == member[n], n


def test_lcrnet_json_written_from_the_smarthome_npz_round_trips_to_the_same_joints(tmp_path):
    from tmor.shards.benchmarks.lcrnet import read_lcrnet
    from tmor.shards.benchmarks.smarthome import import_smarthome

    kpts = np.load(need("toyota_smarthome", "WatchTV_p02_r03_v05_c05_LCRNet2d.npz"))["kpts"]
    kp, score = _coco_to_lcr(kpts)
    kp3 = np.stack([kp[..., 0] / 100, kp[..., 1] / 100, np.ones_like(kp[..., 0])], -1)
    path = tmp_path / "WatchTV_p02_r03_v05_c05_pose3d.json"
    from tmor.shards.benchmarks.lcrnet import write_lcrnet

    write_lcrnet(str(path), kp, score, kp3 * score[..., None])
    raw = json.loads(path.read_text())
    det = next(f for f in raw["frames"] if f)[0]
    assert raw["njts"] == 13 and len(det["pose2d"]) == 26 and len(det["pose3d"]) == 39
    i = next(i for i, f in enumerate(raw["frames"]) if f)
    assert det["pose2d"][:13] == kp[0, i, :, 0].tolist()  # coordinate-major: x0..x12 first
    back, sc, back3 = read_lcrnet(str(path))
    assert back.shape == (1, 1379, 13, 2)
    np.testing.assert_array_equal(back, kp)
    np.testing.assert_array_equal(sc, score)
    np.testing.assert_allclose(back3, kp3 * score[..., None], rtol=1e-6)
    coco, csc = L.convert(back, sc, "lcrnet13", "coco17")  # back to the npz's COCO-17
    names = L.JOINTS["coco17"]
    body = [names.index(n) for n in names if n not in ("left_eye", "right_eye", "left_ear",
                                                          "right_ear")]
    np.testing.assert_array_equal(coco[0][:, body], kpts[:, body] * score[0, :, :1, None])
    assert (csc[0][:, [1, 2, 3, 4]] == 0).all()  # eyes and ears: missing, score 0
    root = str(tmp_path / "sh")
    import_smarthome([str(path)], root, splits=[str(need("toyota_smarthome", "splits"))])
    (t,) = iter_triplets(root)
    assert t.label == "WatchTV" and t.layout == "lcrnet13" and t.meta["release"] == "v1.2"
    assert t.meta["ids"] == {"subject": 2, "take": 3, "view": 5, "camera": 5}
    assert t.meta["splits"] == ["cs_test"]  # WatchTV is no CV class
    np.testing.assert_array_equal(t.keypoint, kp)


def test_uav_human_real_sample_names_give_the_documented_csv1_csv2_sizes():
    from tmor.shards.benchmarks.uav_human import parse_name, split_names

    path = need("uav_human", "skes_available_name.txt")
    names = [n.strip() for n in path.read_text().splitlines() if n.strip()]
    assert len(names) == 23_029
    sizes = {k: len(v) for k, v in split_names(names).items()}
    assert sizes == {"csv1_train": 16_723, "csv1_test": 6_306, "csv2_train": 16_431,
                     "csv2_test": 6_598}
    ids = parse_name(names[0])
    assert ids["person"] == 0 and ids["action"] == 0 and ids["upper_clothes"] == "022000"
    assert len({parse_name(n)["person"] for n in names}) == 119
    assert {parse_name(n)["action"] for n in names} == set(range(155))
