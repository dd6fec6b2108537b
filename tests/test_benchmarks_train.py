"""Split names of imported benchmark shards drive finetune and detect from the command line,
and 3D data trains as 3D on its own layout (tiny CPU runs)."""

from __future__ import annotations

import json

import numpy as np
from test_benchmarks_fixtures import import_utkinect
from typer.testing import CliRunner

from tmor.cli.train import app as train_app

TINY = ["--epochs", "1", "--batch-size", "2", "--device", "cpu"]


def test_finetune_on_imported_kinect_v1_shards_by_split_name_keeps_3d(tmp_path):
    root = str(tmp_path / "c")
    import_utkinect(tmp_path, root)
    out = tmp_path / "ft"
    r = CliRunner().invoke(train_app, [
        "finetune", "--data", root, "--split-train", "xsub_train", "--split-test", "xsub_test",
        "--frames", "8", "--max-persons", "1", "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    # the xsub_train samples are split into train and validation (model selection)
    assert res["num_train"] + res["num_val"] == 2 and res["num_test"] == 2
    assert res["classes"] == ["sitDown", "walk"]
    assert res["input_spec"] == {"frames": 8, "channels": 3, "max_persons": 1, "layout": None}
    r = CliRunner().invoke(train_app, [
        "finetune", "--data", root, "--split-train", "cs_train", "--out", str(out), *TINY])
    assert r.exit_code == 2 and "xsub_train" in r.output  # one-line error naming the splits


def test_detect_on_imported_pku_mmd_shards_by_split_name(tmp_path):
    from tmor.shards.benchmarks.pku_mmd import import_pku_mmd

    rng = np.random.default_rng(0)
    for vid in ("0002-L", "0002-R"):
        a = rng.normal(0, 0.3, (40, 150))
        np.savetxt(tmp_path / f"{vid}.txt", a, fmt="%f")
        (tmp_path / f"{vid}.label").write_text("2,5,20,1\n")
    (tmp_path / "cross-view.txt").write_text(
        "Training videos: \n0002-L\nValidataion videos:\n0002-R\n")
    labels = tmp_path / "labels"
    labels.mkdir()
    for vid in ("0002-L", "0002-R"):
        (labels / f"{vid}.txt").write_text("2,5,20,1\n")
    root = str(tmp_path / "c")
    import_pku_mmd([str(tmp_path / "0002-L.txt"), str(tmp_path / "0002-R.txt")], root,
                   annotations=[str(labels)], splits=[str(tmp_path / "cross-view.txt")])
    out = tmp_path / "det"
    r = CliRunner().invoke(train_app, [
        "detect", "--data", root, "--split-train", "xview_train", "--split-test", "xview_test",
        "--window", "16", "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert len(res["classes"]) == 51 and np.isfinite(res["best"]["frame_map_tsu"])
