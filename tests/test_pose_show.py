"""``tmor-data show``: skeletons drawn from a corpus root's fetch and pose shards (real clip)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tmor.pipeline.pose.stage import PoseConfig, PoseStage
from tmor.pipeline.stage import Sample
from tmor.shards.tario import read_tar_samples, write_tar_samples
from tmor.skeleton.npz import decode_pose

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
CLIP = DATA / "videos" / "ucf101_archery.avi"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    if not CLIP.is_file():
        pytest.skip(f"real clip not found at {CLIP}")
    pytest.importorskip("mediapipe")
    root = tmp_path_factory.mktemp("corpus")
    mp4 = CLIP.read_bytes()  # xvid in avi: the stage reads any container PyAV reads
    stage = PoseStage(PoseConfig(backend="mediapipe", fps=2.0))
    stage.setup()
    sample = Sample(key="archery01", row={}, members={"fetch": {"mp4": mp4, "json": b"{}"}})
    (res,) = list(stage.process(iter([sample])))
    stage.teardown()
    write_tar_samples(str(root / "fetch" / "000003.tar"), [("archery01", {"mp4": mp4})])
    write_tar_samples(str(root / "pose" / "000003.tar"), [("archery01", res.members)])
    return root


def test_show_writes_a_contact_sheet_and_an_mp4(root, tmp_path):
    from typer.testing import CliRunner

    from tmor.cli.data import app as data_app
    from tmor.pipeline import video

    sheet = tmp_path / "sheet.png"
    r = CliRunner().invoke(data_app, ["show", "archery01", "--root", str(root), "-o", str(sheet),
                                      "--tiles", "4", "--cols", "2", "--tile-width", "160"])
    assert r.exit_code == 0, r.output
    from PIL import Image

    img = np.asarray(Image.open(sheet).convert("RGB"))
    assert img.shape == (2 * 120, 2 * 160, 3)
    # the drawn skeleton's colour of track 0 is on the sheet
    assert (np.abs(img.astype(int) - (230, 25, 75)).sum(-1) < 60).sum() > 20

    out = tmp_path / "drawn.mp4"
    r = CliRunner().invoke(data_app, ["show", "archery01", "--root", str(root), "-o", str(out)])
    assert r.exit_code == 0, r.output
    shard = read_tar_samples(str(root / "pose" / "000003.tar"))
    pose = decode_pose(shard["archery01"]["pose.npz"])
    info = video.probe(out)
    assert info.frames == len(pose["frame_index"]) and (info.width, info.height) == (320, 240)

    r = CliRunner().invoke(data_app, ["show", "nokey", "--root", str(root), "-o", str(sheet)])
    assert r.exit_code == 2 and "not found" in r.output
