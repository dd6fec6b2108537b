"""bench/gpu.sh, the script of a lent GPU machine, runs end to end here so that it cannot rot:
SMOKE=1 runs every step at small sizes on this CPU and writes one JSON whose sections hold
numbers; the preflight stops before the timed steps with one line per missing thing (and,
without SMOKE, a missing GPU is one of them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA
SECTIONS = {
    "pose": ["pipeline_fps", "naive_fps", "forward_fps", "pipeline_over_forward"],
    "pose_null": ["null_model_fps_per_core", "null_model_host_fps_per_core"],
    "embed": ["pipeline_clips_per_s", "forward_clips_per_s", "naive_clips_per_s",
              "frames_decoded_per_clip"],
    "reader": ["samples_per_s_per_worker", "samples_per_s_all_cores"],
    "train": ["tmor_step_samples_per_s", "supervised_samples_per_s", "inference_samples_per_s"],
}


def _run(out: Path, timeout: int, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, VENV=sys.prefix, **env)
    full.pop("PYTHONPATH", None)  # gpu.sh puts this checkout first itself
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), str(out)], env=full,
                          capture_output=True, text=True, timeout=timeout)


def test_smoke_runs_every_step_and_writes_one_json(tmp_path: Path) -> None:
    if not (DATA / "models" / "yolo11n-pose.pt").is_file():
        pytest.skip(f"the shared data (weights, clips, skeletons) is not at {DATA}")
    out = tmp_path / "gpu.json"
    r = _run(out, 600, SMOKE="1", TMOR_DATA=str(DATA), OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["smoke"] is True and list(doc["steps"])[0] == "pose"  # the most worth having
    assert set(SECTIONS) <= set(doc["steps"])
    for name, keys in SECTIONS.items():
        assert doc["steps"][name]["rc"] == 0
        for k in keys:
            assert isinstance(doc[name][k], (int, float)) and doc[name][k] > 0, (name, k)
    assert doc["goals"]["reader_worker_over_train_step"] > 0
    assert doc["train"]["resume"]["resumed"] is True  # a run stopped after epoch 1, resumed
    assert doc["steps"]["lift"]["rc"] == 0  # the MotionBERT step: lifter alone, inside the stage
    assert doc["lift"]["lifter"]["batched_track_frames_per_s"] > 0 and doc["lift"]["pipeline"]


def test_preflight_names_each_missing_thing_before_any_step(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    r = _run(tmp_path / "gpu.json", 300, TMOR_DATA=str(tmp_path / "data"))
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.startswith("gpu.sh: missing: ")]
    assert any("yolo11n-pose.pt" in x for x in lines)
    assert sum("clip: " in x for x in lines) == 6  # bench/pose.py's clips, one line each
    assert any("skeletons" in x for x in lines)
    import torch

    if not torch.cuda.is_available():  # without SMOKE a missing GPU is an error
        assert any(x.startswith("gpu.sh: missing: GPU: ") for x in lines)
    assert "== pose" not in r.stdout and not (tmp_path / "gpu.json").exists()


def test_dry_run_lists_every_step(tmp_path: Path) -> None:
    r = _run(tmp_path / "gpu.json", 60, DRY_RUN="1")
    assert r.returncode == 0, r.stderr
    steps = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("== ")]
    assert steps[:2] == ["install", "pose"] and set(SECTIONS) <= set(steps)
