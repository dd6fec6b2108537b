"""`tmor-data run --executor slurm` on a real single-node Slurm cluster (slurm-wlm + munge, started
by the fixture; skipped with the reason where it cannot start): the same triplets as a local run,
a progress bar that counts every array task's samples, and no sacct warnings (the cluster has no
accounting, as many small clusters)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import shared_data
from slurm_cluster import ClusterUnavailable, start_cluster

REPO = Path(__file__).resolve().parents[1]
CLIPS = ("kinetics_tai_chi_1.mp4", "ntu_two_person_hug.mp4")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as e:
        pytest.skip(f"no Slurm here: {e}")
    yield cluster
    cluster.stop()


def _run(clips: Path, root: Path, config: Path, pose: Path, embed: str, env: dict,
         *extra: str) -> subprocess.CompletedProcess:
    videos = shared_data("videos")
    argv = [sys.executable, "-m", "tmor.cli.data", "run", str(clips), "--root", str(root),
            "--config", str(config), "--allow-local", str(videos), "--pose-model", str(pose),
            "--embed-model", embed, "--shard-size", "1", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900,
                          env={**env, "PYTHONPATH": str(REPO), "COLUMNS": "120"})


def test_run_under_slurm_builds_the_local_corpus(tmp_path, slurm):
    videos = shared_data("videos")
    pose = shared_data("models", "yolo11n-pose.pt")
    from tmor.pipeline.vl.tiny import write_open_clip

    embed = write_open_clip(tmp_path / "models")
    clips = tmp_path / "clips.csv"
    clips.write_text("path,start,end,label\n" + "".join(
        f"{videos / c},0.5,1.5,{c.split('.')[0]}\n" for c in CLIPS))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "pose": {"fps": 4, "batch_size": 8, "device": "cpu"},
        "embed": {"batch_size": 2, "device": "cpu"}, "caption": {"device": "cpu"},
        "pack": {"min_frames_with_person": 1},
    }))
    local = _run(clips, tmp_path / "local", config, pose, embed, os.environ, "--no-progress")
    assert local.returncode == 0, local.stderr[-3000:]

    done = _run(clips, tmp_path / "slurm", config, pose, embed, slurm.env,
                "--executor", "slurm", "--worker-count", "2", "--cpus", "1", "--mem-gb", "2",
                "--time-min", "15")
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{out[-3000:]}\nslurmctld: {slurm.log('slurmctld')[-1500:]}"
    assert "sacct" not in out and "Bypassing" not in out, out[-3000:]
    assert out.count("submitted 2 array task(s)") == 5  # one array per stage

    # the progress bar counted the array tasks' samples: "<stage> (all workers) ... 2/2"
    for stage in ("fetch", "pose", "caption", "embed", "triplets"):
        bars = re.findall(rf"{stage} \(all workers\).*?(\d+)/(\d+)", out)
        assert bars and bars[-1] == ("2", "2"), (stage, out[-3000:])

    for tar in sorted((tmp_path / "local" / "triplets").glob("*.tar")):
        twin = tmp_path / "slurm" / "triplets" / tar.name
        assert twin.read_bytes() == tar.read_bytes(), tar.name
    assert len(list((tmp_path / "slurm" / "triplets").glob("*.tar"))) == len(CLIPS)
