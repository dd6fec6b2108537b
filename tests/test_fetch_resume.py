"""Kill -9 of `tmor-data fetch` mid-run, then a rerun: the same committed corpus as a clean run.

The runs keep 3 clips in flight inside each shard (``--clips-in-flight 3``) on the range path
(``small_source_mb: 0`` from a YAML file: these short sources would otherwise be read whole)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tmor.manifests import ledger as L
from tmor.shards.tario import read_tar_samples

sys.path.insert(0, str(Path(__file__).parent))
from rangeserver import RangeServer  # noqa: E402

BIN = Path(sys.executable).parent / "tmor-data"
CLIPS = ["kinetics_tai_chi_1.mp4", "kinetics_clean_and_jerk.mp4", "basketball_two_person.mp4",
         "kinetics_arm_wrestling.mp4", "kinetics_tai_chi_2.mp4"]


def _write_list(path: Path, server: RangeServer) -> None:
    lines = ["url,start,end,label"]
    for clip in CLIPS:
        for start in (0.5, 3.0, 6.0):  # 15 clips of 1.2 s, 3 per source video
            lines.append(f"{server.url(clip)},{start},{start + 1.2},{clip.split('.')[0]}")
    path.write_text("\n".join(lines) + "\n")


def _fetch(root: Path, clip_list: Path, **popen) -> subprocess.Popen:
    config = root.parent / f"{root.name}.yaml"
    config.write_text("fetch:\n  small_source_mb: 0\n")
    argv = [str(BIN), "fetch", str(clip_list), "--root", str(root), "--shard-size", "3",
            "--no-progress", "--clips-in-flight", "3", "--config", str(config)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


def _corpus(root: Path) -> dict[str, tuple]:
    """key -> (shard, status, frames, member names) over every committed shard."""
    out: dict[str, tuple] = {}
    for shard in L.committed_shards(str(root), "fetch"):
        tar = read_tar_samples(L.tar_url(str(root), "fetch", shard))
        for row in L.read_ledger(str(root), "fetch", shard).to_dict("records"):
            assert row["key"] not in out, "a key committed twice"
            out[row["key"]] = (shard, row["status"], row["frames"], sorted(tar[row["key"]]))
    return out


@pytest.mark.skipif(not BIN.exists(), reason="tmor-data is not installed in this environment")
def test_kill9_mid_fetch_then_rerun_equals_clean_run(tmp_path, videos_dir):
    with RangeServer(videos_dir) as server:
        clip_list = tmp_path / "clips.csv"
        _write_list(clip_list, server)
        clean = tmp_path / "clean"
        proc = _fetch(clean, clip_list)
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]

        killed = tmp_path / "killed"
        proc = _fetch(killed, clip_list, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            committed = L.committed_shards(str(killed), "fetch")
            in_flight = list((killed / "fetch" / "_work").glob("*/*.record.json"))
            if committed and in_flight:  # a shard done, another one half done: kill now
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = L.committed_shards(str(killed), "fetch")
        assert 1 <= len(before) < 5
        assert list((killed / "fetch" / "_claims").glob("*.claim")), "the kill left its claim"

        proc = _fetch(killed, clip_list)
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]

    got, want = _corpus(killed), _corpus(clean)
    assert len(want) == 15 and all(v[1] == "ok" for v in want.values())
    assert got == want
    paths = {row["fetch_path"] for shard in L.committed_shards(str(killed), "fetch")
             for row in L.read_ledger(str(killed), "fetch", shard).to_dict("records")}
    assert paths == {"range"}
    assert not list((killed / "fetch" / "_work").glob("*/*"))
    assert not list((killed / "fetch" / "_claims").glob("*.claim"))
