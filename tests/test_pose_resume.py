"""kill -9 in the middle of ``tmor-data extract-pose``, rerun: the same committed pose shards
(byte for byte) as an uninterrupted run. Real fetch of real clips, real YOLO, real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
YOLO = DATA / "models" / "yolo11n-pose.pt"
CLIPS = ["ucf101_archery.avi", "kinetics_tai_chi_2.mp4", "two_person_handover_portrait.mp4"]
CLI = [sys.executable, "-c", "from tmor.cli.data import main; main()"]


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *args], check=True, env=env, capture_output=True, text=True, **kw)


@pytest.mark.skipif(not YOLO.is_file() or shutil.which("ffmpeg") is None,
                    reason=f"YOLO weights ({YOLO}) or ffmpeg missing")
def test_kill_9_then_rerun_gives_the_same_pose_shards(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in CLIPS:  # 2 s of each clip, one clip per shard
        subprocess.run([shutil.which("ffmpeg"), "-v", "error", "-i", str(DATA / "videos" / name),
                        "-t", "2", "-map", "0:v:0", "-c", "copy", str(src / (Path(name).stem
                                                                             + ".mp4"))],
                       check=True)
    a, b = tmp_path / "A", tmp_path / "B"
    _cli("fetch", str(src), "--root", str(a), "--allow-local", str(src), "--shard-size", "1",
         "--no-progress")
    assert len(list((a / "fetch").glob("*.tar"))) == 3
    shutil.copytree(a, b)
    pose = ["--model", str(YOLO), "--fps", "3", "--batch-size", "4", "--no-progress"]
    _cli("extract-pose", "--root", str(a), *pose)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, "extract-pose", "--root", str(b), *pose], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((b / "pose").glob("*.parquet")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list((b / "pose").glob("*.parquet")))
    if committed == 3:
        pytest.skip("the run finished before the kill; nothing was interrupted")
    assert committed >= 1
    _cli("extract-pose", "--root", str(b), *pose)

    names = sorted(p.name for p in (a / "pose").glob("*.tar"))
    assert names == sorted(p.name for p in (b / "pose").glob("*.tar")) and len(names) == 3
    for n in names:
        assert (a / "pose" / n).read_bytes() == (b / "pose" / n).read_bytes(), n
