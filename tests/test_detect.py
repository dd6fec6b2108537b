"""Frame-wise detection on a real untrimmed sequence: FallFree non-fall and fall recordings
concatenated, with per-frame labels; the untrimmed importer; window stitching."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _transfer_data import real_sequences, require_data
from typer.testing import CliRunner

CLASSES = ["falling", "walking"]


def _untrimmed(name: str, parts: list[tuple[str, int]], seqs: dict) -> dict:
    from tmor.shards.import_untrimmed import concat_sequences, untrimmed_annotation

    kp, sc, kp3, segs = concat_sequences([(*seqs[p], c) for p, c in parts])
    return untrimmed_annotation(name, kp, sc, segs, "ntu25", 30.0, kp3)


@pytest.fixture(scope="module")
def det_pkl(tmp_path_factory):
    require_data()
    from tmor.shards.import_untrimmed import write_untrimmed_pickle

    seqs = {n: (kp, sc, k3) for n, _, kp, sc, k3, _ in real_sequences()}
    train = _untrimmed("train_seq", [("Non-fall-1-70-3_Skeleton", 1),
                                     ("Fall-1-55-3_Skeleton", 0)], seqs)
    test = _untrimmed("test_seq", [("Non-fall-2-45-1_Skeleton", 1),
                                   ("Fall-1-19-4_Skeleton", 0)], seqs)
    path = tmp_path_factory.mktemp("detect") / "untrimmed.pkl"
    info = write_untrimmed_pickle(str(path), [train, test], CLASSES,
                                  {"train": ["train_seq"], "test": ["test_seq"]})
    assert info == {"sequences": 2, "classes": 2, "frames": 339 + 175 + 89 + 833, "segments": 4}
    assert test["segments"] == [(1, 0, 89), (0, 89, 922)]
    return path


def test_detect_finetune_end_to_end_event_map_from_output(det_pkl):
    from tmor.cli.train import app as train_app
    from tmor.train import metrics as M

    out = det_pkl.parent / "ft"
    res = CliRunner().invoke(train_app, [
        "detect", "--data", str(det_pkl), "--out", str(out), "--epochs", "1", "--window", "32",
        "--stride", "32", "--max-persons", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    preds = np.load(out / "predictions.npz")
    scores, targets = preds["test_seq"], preds["test_seq.targets"]
    assert scores.shape == targets.shape == (922, 2)
    assert scores.min() >= 0 and scores.max() <= 1
    assert targets[:89, 1].all() and targets[89:, 0].all() and targets.sum() == 922
    # the event mAP recomputed from the written per-frame scores equals the reported one
    props = M.scores_to_segments(scores, "test_seq", 0.5)
    ground = M.labels_to_segments(targets, "test_seq")
    ev = M.event_map(props, ground, 2)
    for th in ("0.1", "0.3", "0.5"):
        assert r["best"]["event_map"][th] == pytest.approx(ev[float(th)]["map"])
        assert 0.0 <= r["best"]["event_map"][th] <= 1.0
    assert r["best"]["frame_map_tsu"] == pytest.approx(M.tsu_frame_map(scores, targets).map)
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["task"] == "detection" and "best_event_map" in summary


def test_detect_linear_probe_freezes_encoder(det_pkl):
    import torch

    from tmor.model.checkpoint import load_checkpoint
    from tmor.train.detect import DetectConfig, run_detection

    out = det_pkl.parent / "lin"
    r = run_detection(DetectConfig(data=str(det_pkl), out=str(out), mode="linear", epochs=3,
                                   window=32, stride=32, max_persons=1, device="cpu"),
                      log=lambda *_: None)
    assert np.isfinite(r["last"]["frame_map_tsu"])
    assert set(r["last"]["event_map"]) == {"0.1", "0.3", "0.5"}
    a, b = load_checkpoint(str(out / "best.pt")), load_checkpoint(str(out / "last.pt"))
    for name, w in a["encoder"].items():  # BatchNorm statistics included: eval mode throughout
        assert torch.equal(w, b["encoder"][name]), name


def test_window_stitching_averages_overlaps():
    import torch

    from tmor.model.unik import UNIK
    from tmor.train.data import take_window, window_starts
    from tmor.train.detect import FrameClassifier, pooled_map, predict_sequence

    assert window_starts(40, 32, 16) == [0, 8]
    assert window_starts(64, 32, 32) == [0, 32]
    assert window_starts(10, 32, 16) == [0]
    torch.manual_seed(0)
    enc = UNIK(2, 25, 1).eval()
    head = FrameClassifier.build(enc, 3).eval()
    x = np.random.default_rng(0).standard_normal((2, 40, 25, 1)).astype(np.float32)
    got = predict_sequence(enc, head, x, 32, 16, "cpu")
    with torch.no_grad():
        w = [torch.sigmoid(head(pooled_map(enc, torch.from_numpy(take_window(x, s, 32)[0][None])),
                                32))[0].numpy().T for s in (0, 8)]
    want = np.zeros((40, 3))
    want[:8] = w[0][:8]
    want[8:32] = (w[0][8:] + w[1][:24]) / 2
    want[32:] = w[1][24:]
    np.testing.assert_allclose(got, want, atol=1e-5)
    xs, mask = take_window(x, 30, 32)
    assert mask.sum() == 10 and not xs[:, 10:].any()


def test_untrimmed_import_pku_style_files_to_shards(tmp_path):
    require_data()
    from tmor.shards.import_untrimmed import (
        frame_labels_to_segments,
        import_pku_style,
        read_label_file,
    )
    from tmor.train.data import frame_targets, load_split

    src = "/".join([str(require_data()), "fallfree", "Fall-1-55-3_Skeleton.csv"])
    labels = tmp_path / "Fall-1-55-3_Skeleton.txt"
    labels.write_text("2,0,99,1.0\n1,100,174,0.9\n")  # PKU-MMD: label,start,end(inclusive)
    segs = read_label_file(str(labels), label_offset=-1)
    assert segs == [(1, 0, 100), (0, 100, 175)]
    root = tmp_path / "corpus"
    info = import_pku_style([src], [str(labels)], str(root), CLASSES, label_offset=-1,
                            split={"test": ["Fall-1-55-3_Skeleton"]})
    assert info["format"] == "untrimmed" and info["classes"] == CLASSES
    data = load_split(str(root), "test")
    assert data.classes == CLASSES and len(data.samples) == 1
    s = data.samples[0]
    assert s.segments == segs and s.num_frames == 175 and s.keypoint_3d is not None
    y = frame_targets(s.segments, s.num_frames, 2)
    assert frame_labels_to_segments(y) == sorted(segs)
    ids = np.where(y[:, 0] == 1, 0, 1)
    assert frame_labels_to_segments(ids) == sorted(segs)
