"""embed through the runner on real clips: kill -9 mid-run, rerun, same corpus as a clean run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmor.manifests import ledger as L
from tmor.pipeline.stage import Result, Sample, Stage

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VIDEOS = DATA / "videos"
ROWS = [("kinetics_tai_chi_1.mp4", "doing tai chi"), ("kinetics_clean_and_jerk.mp4", None),
        ("ucf101_archery.avi", "shooting arrows"), ("kinetics_arm_wrestling.mp4", "arm wrestling"),
        ("basketball_two_person.mp4", "playing basketball"), ("broken.mp4", "nothing")]

CHILD = """
import sys
from tmor.pipeline.embed import EmbedConfig, EmbedStage
from tmor.pipeline.executors import run_stage
from tmor.pipeline.runner import RunnerOptions
cfg = EmbedConfig(model=sys.argv[2], device="cpu", batch_size=1, decode_threads=1, prefetch=1)
run_stage(EmbedStage(cfg), sys.argv[1], RunnerOptions(progress=False))
"""


class RawFetch(Stage):
    """Stands in for fetch on local files: the file's own bytes as the clip (no transcoding)."""

    name = "fetch"

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        for s in samples:
            yield Result(s.key, members={"mp4": Path(s.row["source"]).read_bytes()})


def _view(root: str) -> dict:
    from tmor.shards.tario import read_tar_samples

    out = {}
    for shard in L.committed_shards(root, "embed"):
        ledger = L.read_ledger(root, "embed", shard)
        tars = read_tar_samples(L.tar_url(root, "embed", shard))
        for r in ledger.to_dict("records"):
            sim = r.get("video_text_sim")
            sim = None if sim is None or sim != sim else sim  # NaN for failed keys
            out[r["key"]] = (r["status"], r["error_class"], sim, tars.get(r["key"]))
    return out


@pytest.fixture
def setup(tmp_path):
    from tmor.pipeline.vl.tiny import write_open_clip

    if not all((VIDEOS / f).is_file() for f, _ in ROWS[:-1]):
        pytest.skip(f"real test clips not found under {VIDEOS}")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    lines = ["path,label"]
    for f, label in ROWS:
        src = tmp_path / f if f == "broken.mp4" else VIDEOS / f
        lines.append(f"{src},{label or ''}")
    inputs = tmp_path / "clips.csv"
    inputs.write_text("\n".join(lines) + "\n")
    spec = write_open_clip(tmp_path / "model")
    return tmp_path, inputs, spec


def test_kill_mid_embed_then_rerun_matches_clean_run(setup):
    from tmor.manifests.inputs import read_inputs
    from tmor.manifests.plan import write_plan
    from tmor.pipeline.caption import CaptionConfig, CaptionStage
    from tmor.pipeline.embed import EmbedConfig, EmbedStage
    from tmor.pipeline.executors import run_stage
    from tmor.pipeline.runner import RunnerOptions

    tmp, inputs, spec = setup
    roots = {"clean": str(tmp / "clean"), "killed": str(tmp / "killed")}
    df, _ = read_inputs(str(inputs))
    write_plan(roots["clean"], df, shard_size=2)
    run_stage(RawFetch(), roots["clean"], RunnerOptions(progress=False))
    cap = run_stage(CaptionStage(CaptionConfig(model=spec, device="cpu")), roots["clean"],
                    RunnerOptions(progress=False))
    assert cap["ok"] == len(ROWS) and cap["failed"] == 0
    shutil.copytree(roots["clean"], roots["killed"])
    sources = L.read_stage_ledgers(roots["clean"], "caption")["caption_source"]
    assert sorted(sources) == ["label"] * 5 + ["zero_shot"]

    clean = run_stage(EmbedStage(EmbedConfig(model=spec, device="cpu", batch_size=1)),
                      roots["clean"], RunnerOptions(progress=False))
    assert clean["shards_committed"] == 3 and clean["ok"] == 5 and clean["failed"] == 1
    assert clean["failed_by_class"]["bad_input"] == 1

    killed = roots["killed"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, killed, spec], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    embed_dir = Path(killed) / "embed"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        work = list((embed_dir / "_work").rglob("*")) if (embed_dir / "_work").exists() else []
        if any(p.is_file() for p in work) or L.committed_shards(killed, "embed"):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the embed run finished before it could be killed"
    assert len(L.committed_shards(killed, "embed")) < 3

    rerun = run_stage(EmbedStage(EmbedConfig(model=spec, device="cpu", batch_size=1)), killed,
                      RunnerOptions(progress=False))
    assert rerun["shards_committed"] == 3
    assert _view(killed) == _view(roots["clean"])
    assert not (embed_dir / "_work").exists() or not any(
        p.is_file() for p in (embed_dir / "_work").rglob("*"))
