"""`tmor-data run` over real clips: every stage through the CLI, then validate and the reader; a
second clean run writes byte-identical triplet shards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import shared_data

BIN = Path(sys.executable).parent / "tmor-data"
CLIPS = {"kinetics_tai_chi_1.mp4": 1, "ntu_two_person_hug.mp4": 2, "ucf101_archery.avi": 1}


@pytest.mark.skipif(not BIN.exists(), reason="tmor-data is not installed in this environment")
def test_run_builds_valid_triplets_that_the_reader_streams(tmp_path):
    videos = shared_data("videos")
    pose_model = shared_data("models", "yolo11n-pose.pt")
    from tmor.pipeline.vl.tiny import write_open_clip

    embed_model = write_open_clip(tmp_path / "models")
    rows = ["path,start,end,label"] + [f"{videos / c},0.5,2.0,{c.split('.')[0]}" for c in CLIPS]
    clip_list = tmp_path / "clips.csv"
    clip_list.write_text("\n".join(rows) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "pose": {"fps": 4, "batch_size": 8}, "embed": {"batch_size": 2},
        "pack": {"min_frames_with_person": 2},
    }))

    def run(root: Path) -> None:
        argv = [str(BIN), "run", str(clip_list), "--root", str(root), "--config", str(config),
                "--allow-local", str(videos), "--pose-model", str(pose_model),
                "--embed-model", embed_model, "--no-progress"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]

    root, again = tmp_path / "corpus", tmp_path / "again"
    run(root)
    run(again)
    tars = sorted(p.name for p in (root / "triplets").glob("*.tar"))
    assert tars and tars == sorted(p.name for p in (again / "triplets").glob("*.tar"))
    for name in tars:  # two clean runs: the same bytes
        assert (root / "triplets" / name).read_bytes() == (again / "triplets" / name).read_bytes()
    for stage in ("fetch", "pose", "caption", "embed", "triplets"):
        assert (root / stage / "000000.parquet").exists(), stage

    from tmor.shards.validate import validate

    report = validate(str(root))
    assert report.ok and report.samples == 3, report.defects

    from tmor.shards.reader import ReaderConfig, make_loader

    cfg = ReaderConfig(frames=8, batch_size=2, num_workers=2, epoch_samples=4,
                       shuffle_buffer=0, drop_last=True)
    batches = list(make_loader(str(root / "triplets"), cfg))
    assert len(batches) == 2
    for b in batches:
        assert tuple(b["pose"].shape) == (2, 2, 8, 17, 2)
        assert tuple(b["video"].shape) == (2, 32) and bool(b["has_video"].all())
        assert tuple(b["text"].shape) == (2, 32) and bool(b["has_text"].all())
        assert b["index"].dtype.is_floating_point is False
