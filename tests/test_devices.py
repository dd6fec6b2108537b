"""One GPU per local worker: worker i gets cuda:(i mod G); an explicit device pins them all."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tmor import devices
from tmor.manifests import ledger as L
from tmor.manifests.inputs import read_inputs
from tmor.manifests.plan import write_plan
from tmor.pipeline.executors import run_stage
from tmor.pipeline.runner import RunnerOptions
from tmor.pipeline.stage import Result, Sample, Stage


@dataclass
class EchoConfig:
    device: str = "auto"


class DeviceEcho(Stage):
    """Records the device its worker was given (loads no model). Each worker waits until
    ``workers`` of them have started, so that every worker of the pool takes part."""

    name = "echo"
    writes_tar = False

    def __init__(self, device: str, meet: Path, workers: int):
        self.config = EchoConfig(device)
        self.meet, self.workers = meet, workers

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        (self.meet / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(self.meet.iterdir())) < self.workers and time.monotonic() < deadline:
            time.sleep(0.05)
        for s in samples:
            yield Result(s.key, record={"device": self.config.device})


def test_worker_device_rule():
    assert [devices.worker_device("auto", i, 3) for i in range(5)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert devices.worker_device("cuda", 5, 4) == "cuda:1"
    assert devices.worker_device("auto", 2, 0) == "cpu"
    assert devices.worker_device("cuda:3", 0, 8) == "cuda:3"  # pinned
    assert devices.worker_device("cpu", 1, 8) == "cpu"
    assert devices.resolve_device("cuda") == "cuda:0"


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    for i in range(6):
        (src / f"clip{i}.mp4").write_bytes(b"x" * (i + 1))
    df, _ = read_inputs(str(src))
    root = str(tmp_path / "corpus")
    write_plan(root, df, shard_size=1)
    return root


def _devices_by_worker(root: str) -> dict[str, set[str]]:
    df = L.read_stage_ledgers(root, "echo")
    return {w: set(g["device"]) for w, g in df.groupby("worker")}


def test_local_pool_gives_each_worker_its_own_gpu(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 3)  # a 3-GPU machine, in the parent
    (tmp_path / "meet").mkdir()
    stage = DeviceEcho("auto", tmp_path / "meet", 2)
    summary = run_stage(stage, corpus, RunnerOptions(progress=False, workers=2))
    assert summary["ok"] == 6
    by_worker = _devices_by_worker(corpus)
    assert len(by_worker) == 2 and all(len(d) == 1 for d in by_worker.values()), by_worker
    for worker, device in by_worker.items():  # worker ids end in "index/count"
        assert device == {f"cuda:{int(worker.rsplit(':', 1)[1].split('/')[0]) % 3}"}
    assert set().union(*by_worker.values()) == {"cuda:0", "cuda:1"}  # distinct, one each


def test_explicit_device_pins_every_worker(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 3)
    (tmp_path / "meet").mkdir()
    stage = DeviceEcho("cuda:2", tmp_path / "meet", 2)
    run_stage(stage, corpus, RunnerOptions(progress=False, workers=2))
    assert set().union(*_devices_by_worker(corpus).values()) == {"cuda:2"}
