"""Linear probe and fine-tuning on real skeleton windows (FallFree Kinect, NTU, FSD-10), through
the command line, on a held-out split made of frames the training never saw."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from _transfer_data import require_data, windows_pickle
from typer.testing import CliRunner

COMMON = ["--frames", "16", "--max-persons", "1", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def pkl(tmp_path_factory):
    require_data()
    path = tmp_path_factory.mktemp("transfer") / "windows.pkl"
    windows_pickle(path)
    return path


@pytest.fixture(scope="module")
def scratch(pkl):
    from tmor.cli.train import app as train_app

    out = pkl.parent / "scratch"
    res = CliRunner().invoke(train_app, [
        "finetune", "--data", str(pkl), "--out", str(out), "--epochs", "8",
        "--optimizer", "adamw", "--lr", "1e-3", *COMMON])
    assert res.exit_code == 0, res.output
    return out, res.output


def _majority_rate(pkl, split: str) -> float:
    from tmor.train.data import load_split

    labels = [s.label for s in load_split(str(pkl), split).samples]
    return max(Counter(labels).values()) / len(labels)


def test_split_is_disjoint_and_real(pkl):
    from tmor.train.data import load_split

    tr, te = load_split(str(pkl), "train"), load_split(str(pkl), "test")
    assert tr.classes == te.classes == ["drop", "falling", "figure skating", "walking"]
    assert not {s.name for s in tr.samples} & {s.name for s in te.samples}
    assert {s.label for s in te.samples} == {0, 1, 2, 3}
    # every test window starts after the last training frame of its recording
    last_train = {}
    for s in tr.samples:
        rec, start = s.name.rsplit("@", 1)
        last_train[rec] = max(last_train.get(rec, 0), int(start) + 16)
    for s in te.samples:
        rec, start = s.name.rsplit("@", 1)
        assert int(start) >= last_train.get(rec, 0)


def test_finetune_from_scratch_beats_chance(pkl, scratch):
    from tmor.model.checkpoint import load_checkpoint, load_encoder

    out, output = scratch
    summary = json.loads(output.strip().splitlines()[-1])
    r = json.loads((out / "results.json").read_text())
    k = len(r["classes"])
    # the epoch is chosen on validation (carved from train: the pickle has no val split), then
    # the test split is evaluated once: it beats chance, mean per-class accuracy (1/K for any
    # constant or random guess) with a margin, and top-1 at least matches always answering the
    # most frequent test class
    assert r["best"]["split"] == "test" and r["num_val"] >= 1 and "training samples" in r[
        "val_source"]
    assert r["best"]["mean_class_accuracy"] > 1.5 / k
    assert r["best"]["top1"] >= _majority_rate(pkl, "test")
    assert summary["best_top1"] == pytest.approx(r["best"]["top1"])
    assert summary["last_top1"] == pytest.approx(r["last"]["top1"])  # validation, last epoch
    val = [h["top1"] for h in r["history"]]
    assert r["best"]["epoch"] == val.index(max(val)) and r["val_best"]["top1"] == max(val)
    assert len(r["history"]) == 8 and r["num_test"] == sum(r["confusion"][i][j] for i in range(k)
                                                           for j in range(k))
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    enc = load_encoder(str(out / "best.pt"))
    assert enc.config.num_joints == 25 and enc.config.num_persons == 1
    ck = load_checkpoint(str(out / "last.pt"))
    assert ck["classes"] == r["classes"] and ck["heads"]["weight"].shape == (k, 256)


def test_linear_probe_from_checkpoint_keeps_encoder_frozen(pkl, scratch):
    import torch

    from tmor.cli.train import app as train_app
    from tmor.model.checkpoint import load_checkpoint

    init = scratch[0] / "best.pt"
    out = pkl.parent / "linear"
    res = CliRunner().invoke(train_app, [
        "linear-probe", "--data", str(pkl), "--out", str(out), "--init", str(init),
        "--epochs", "30", "--optimizer", "adamw", *COMMON])
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert r["init"] == str(init) and r["mode"] == "linear"
    assert r["best"]["mean_class_accuracy"] > 1 / len(r["classes"])
    before, after = load_checkpoint(str(init))["encoder"], load_checkpoint(str(out / "last.pt"))
    for name, w in before.items():
        assert torch.equal(w, after["encoder"][name]), name


def test_finetune_from_checkpoint_starts_from_its_weights(pkl, scratch):
    import torch

    from tmor.model.checkpoint import load_checkpoint
    from tmor.train.classify import ClassifyConfig, run_classification

    init = scratch[0] / "best.pt"
    out = pkl.parent / "ft_init"
    # a vanishing learning rate: the encoder after one epoch is the loaded one (not a fresh
    # initialization); BatchNorm running statistics still move in train mode
    r = run_classification(ClassifyConfig(
        data=str(pkl), out=str(out), init=str(init), epochs=1, batch_size=8, optimizer="adamw",
        lr=1e-12, weight_decay=0.0, frames=16, max_persons=1, augment=False, device="cpu"),
        log=lambda *_: None)
    before = load_checkpoint(str(init))
    after = load_checkpoint(str(out / "last.pt"))
    for name, w in before["encoder"].items():
        if "running" not in name and "num_batches" not in name:
            assert torch.allclose(w, after["encoder"][name], atol=1e-6), name
    assert r["init"] == str(init) and 0.0 <= r["last"]["top1"] <= 1.0


def test_init_with_mismatched_layout_is_a_clear_error(pkl, scratch):
    from tmor.train.classify import ClassifyConfig, run_classification

    with pytest.raises(ValueError, match="max-persons"):
        run_classification(ClassifyConfig(
            data=str(pkl), out=str(pkl.parent / "bad"), init=str(scratch[0] / "best.pt"),
            epochs=1, frames=16, max_persons=2, device="cpu"), log=lambda *_: None)


def test_shards_give_the_same_samples_as_the_pickle(pkl, tmp_path):
    from tmor.shards.importers import import_pyskl
    from tmor.train.data import load_split

    import_pyskl(str(pkl), str(tmp_path), layout="ntu25")
    for split in ("train", "test"):
        a, b = load_split(str(pkl), split), load_split(str(tmp_path), split)
        assert a.classes == b.classes
        pa = {s.name: (s.label, s.keypoint) for s in a.samples}
        pb = {s.name: (s.label, s.keypoint) for s in b.samples}
        assert pa.keys() == pb.keys()
        for n in pa:
            assert pa[n][0] == pb[n][0]
            np.testing.assert_array_equal(pa[n][1], pb[n][1])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A real (tiny, 2-step) stage-1 pre-training run on the shared window corpus."""
    require_data()
    from _transfer_data import DATA
    from _windows import skeleton_windows, write_window_corpus

    from tmor.train.config import PretrainConfig
    from tmor.train.pretrain import run_pretrain

    root = tmp_path_factory.mktemp("pretrain")
    write_window_corpus(str(root / "corpus"), skeleton_windows(str(DATA), frames=16, stride=8))
    cfg = PretrainConfig(
        shards=str(root / "corpus" / "triplets"), out_dir=str(root / "run"), frames=16,
        layout=None, channels=2, max_persons=1, batch_size=8, num_workers=0, shuffle_buffer=32,
        epoch_samples=32, base_channels=8, proj_dim=32, hidden_dim=64, epochs=1, max_steps=2,
        warmup_steps=1, queue_size=16, cluster=False, ckpt_every=0, device="cpu")
    run_pretrain(cfg)
    return root / "run" / "last.pt"


def test_finetune_and_linear_probe_from_pretrain_checkpoint(pkl, pretrained):
    import torch

    from tmor.model.checkpoint import load_checkpoint
    from tmor.train.classify import ClassifyConfig, run_classification

    ck = load_checkpoint(str(pretrained))
    assert ck["heads"] is not None and ck["train_config"]["frames"] == 16
    quiet = {"log": lambda *_: None}
    # T, C, M come from the checkpoint (no --frames / --max-persons given)
    ft = run_classification(ClassifyConfig(
        data=str(pkl), out=str(pkl.parent / "ft_pre"), init=str(pretrained), epochs=4,
        batch_size=8, optimizer="adamw", lr=1e-3, device="cpu"), **quiet)
    assert ft["input_spec"] == {"frames": 16, "channels": 2, "max_persons": 1, "layout": None}
    assert ft["best"]["mean_class_accuracy"] > 1 / len(ft["classes"])
    lp = run_classification(ClassifyConfig(
        data=str(pkl), out=str(pkl.parent / "lp_pre"), init=str(pretrained), mode="linear",
        epochs=30, batch_size=8, optimizer="adamw", device="cpu"), **quiet)
    assert 0.0 <= lp["last"]["top1"] <= 1.0 and len(lp["history"]) == 30
    after = load_checkpoint(str(pkl.parent / "lp_pre" / "last.pt"))["encoder"]
    assert all(torch.equal(w, after[n]) for n, w in ck["encoder"].items())


def test_yaml_config_sets_options_and_cli_overrides(pkl, tmp_path):
    from tmor.cli.train import app as train_app

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"linear_probe:\n  epochs: 2\n  out: {tmp_path / 'from_yaml'}\n"
                   "  optimizer: adamw\n  frames: 16\n")
    res = CliRunner().invoke(train_app, [
        "linear-probe", "--data", str(pkl), "--config", str(cfg), "--epochs", "1",
        "--max-persons", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "from_yaml" / "results.json").read_text())
    assert len(r["history"]) == 1  # the command line wins over the YAML file
    assert r["config"]["optimizer"] == "adamw" and r["input_spec"]["frames"] == 16
