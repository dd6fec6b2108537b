"""`status --json`, `stats`' readable table and the pose.npz inflation bound."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_runner import DigestStage

from tmor.manifests.inputs import read_inputs
from tmor.manifests.plan import write_plan
from tmor.pipeline.executors import run_stage
from tmor.pipeline.runner import RunnerOptions
from tmor.shards.stats import flatten
from tmor.skeleton.npz import decode_pose, encode_pose

REPO = Path(__file__).resolve().parents[1]


def test_status_json_has_counts_and_per_worker_totals(tmp_path, videos_dir):
    df, _ = read_inputs(str(videos_dir))
    root = str(tmp_path / "corpus")
    write_plan(root, df, shard_size=4)
    run_stage(DigestStage(), root, RunnerOptions(progress=False, workers=2))
    # `status` finds stages by folder name; the digest stage is not a corpus stage, so ask the
    # report directly for it, and check the CLI's JSON on the plan counts
    from tmor.pipeline.report import summarize_stage

    summary = summarize_stage(root, "digest")
    workers = summary["workers"]
    assert sum(w["ok"] for w in workers.values()) == 13
    assert all(w.endswith("/2") for w in workers)
    assert summary["in_progress"] == {"shards": 0, "samples": 0}
    done = subprocess.run([sys.executable, "-m", "tmor.cli.data", "status", "--root", root,
                           "--json"], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["planned_shards"] == 4 and status["planned_samples"] == 13


def test_stats_rows_flatten_nested_fields_and_never_cut_a_repr():
    card = {"import": {"per_shard": {"000000": 13, "000001": 4}, "layout": "coco17",
                       "counts": {"train": 10, "test": 7}, "classes": ["a", "b"],
                       "mean_score": 0.123456, "nested": {"deep": {"x": 1}}, "empty": {}}}
    rows = dict(flatten(card))
    assert rows["import.per_shard"] == "2 entries"
    assert rows["import.counts.train"] == "10" and rows["import.counts.test"] == "7"
    assert rows["import.classes"] == "a, b" and rows["import.mean_score"] == "0.1235"
    assert rows["import.nested.deep.x"] == "1" and rows["import.empty"] == "(none)"
    assert not any("{" in v or "[" in v for v in rows.values())


def test_pose_npz_inflation_is_bounded():
    kp = np.zeros((1, 300, 17, 2), np.float32)
    data = encode_pose(kp, np.zeros((1, 300, 17), np.float32), "coco17", 30.0)
    assert decode_pose(data)["keypoint"].shape == (1, 300, 17, 2)
    with pytest.raises(ValueError, match="bound"):
        decode_pose(data, max_bytes=10_000)
    # a few KB that inflate to 5 MB: refused before inflating
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("keypoint.npy", b"\0" * 5_000_000)
    assert len(bomb.getvalue()) < 20_000
    with pytest.raises(ValueError, match="bound"):
        decode_pose(bomb.getvalue(), max_bytes=1_000_000)
