"""The runner: commit, resume inside a shard, retry of transient failures, several workers."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tmor.errors import ErrorClass, SampleError
from tmor.manifests import ledger as L
from tmor.manifests.inputs import read_inputs
from tmor.manifests.plan import write_plan
from tmor.pipeline.executors import run_stage
from tmor.pipeline.runner import RunnerOptions, SlurmOptions
from tmor.pipeline.stage import Result, Sample, Stage
from tmor.shards.tario import read_tar_samples


class DigestStage(Stage):
    """Reads each local source file and stores its sha256: real I/O, cheap."""

    name = "digest"

    def __init__(self, fail_marker: str | None = None, crash_after: int | None = None):
        self.fail_marker = fail_marker
        self.crash_after = crash_after

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        for i, s in enumerate(samples):
            if self.crash_after is not None and i >= self.crash_after:
                raise RuntimeError("simulated model crash")
            if self.fail_marker and self.fail_marker in s.row["source"]:
                yield Result(s.key, error=SampleError(ErrorClass.TRANSIENT, "flaky"))
                continue
            data = Path(s.row["source"]).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            yield Result(s.key, members={"txt": digest.encode()}, record={"bytes": len(data)})


class CaptionLike(Stage):
    """Ledger-only stage that needs digest: the runner joins upstream records by key."""

    name = "after"
    needs = {"digest": ("txt",)}
    writes_tar = False

    def process(self, samples):
        for s in samples:
            assert s.records["digest"]["status"] == "ok"
            yield Result(s.key, record={"digest_prefix": s.members["digest"]["txt"][:8].decode()})


@pytest.fixture
def corpus(tmp_path, videos_dir):
    df, _ = read_inputs(str(videos_dir))
    root = str(tmp_path / "corpus")
    write_plan(root, df, shard_size=4)
    return root


def _quiet(**kw):
    return RunnerOptions(progress=False, **kw)


def committed_view(root: str, stage: str) -> dict[str, str]:
    out = {}
    for shard in L.committed_shards(root, stage):
        for key, members in read_tar_samples(L.tar_url(root, stage, shard)).items():
            out[key] = members["txt"].decode()
    return out


def test_run_commits_every_shard_and_rerun_skips(corpus):
    summary = run_stage(DigestStage(), corpus, _quiet())
    assert summary["shards_committed"] == summary["shards_planned"] == 4
    assert summary["ok"] == 13 and summary["failed"] == 0
    again = run_stage(DigestStage(), corpus, _quiet())
    assert again["this_run"]["processed"] == 0
    down = run_stage(CaptionLike(), corpus, _quiet())
    assert down["ok"] == 13
    ledger = L.read_stage_ledgers(corpus, "after")
    assert ledger["digest_prefix"].str.len().eq(8).all()


def test_a_stage_that_raises_stops_the_worker_and_leaves_the_shard_uncommitted(corpus):
    from tmor.pipeline.runner import StageFailed

    with pytest.raises(StageFailed, match="simulated model crash") as caught:
        run_stage(DigestStage(crash_after=2), corpus, _quiet())
    assert "shard 000000 left uncommitted; 2 finished sample(s) kept" in str(caught.value)
    assert L.committed_shards(corpus, "digest") == []  # the worker stopped at its first shard
    work = Path(corpus) / "digest" / "_work" / "000000"
    assert len(list(work.glob("*.record.json"))) == 2
    # the rerun resumes: the two finished samples are not redone
    fixed = run_stage(DigestStage(), corpus, _quiet())
    assert fixed["ok"] == 13 and fixed["this_run"]["processed"] == 11


class SameFailure(Stage):
    """A stage that catches its own crash and reports it per sample: every sample fails the same
    unexpected way (a model that fails on everything)."""

    name = "digest"

    def __init__(self, message: str = "model returned garbage"):
        self.message = message

    def process(self, samples):
        for s in samples:
            yield Result(s.key, error=SampleError(ErrorClass.TRANSIENT, self.message))


def test_leading_identical_failures_stop_the_worker_unsaved(corpus):
    from tmor.pipeline.runner import StageFailed

    with pytest.raises(StageFailed, match="first 3 samples failed the same way"):
        run_stage(SameFailure(), corpus, _quiet(max_same_failures=3))
    assert L.committed_shards(corpus, "digest") == []
    assert not list((Path(corpus) / "digest").glob("_work/*/*.record.json"))  # none kept


def test_a_device_error_on_one_sample_stops_the_worker(corpus):
    from tmor.pipeline.runner import StageFailed

    with pytest.raises(StageFailed, match="CUDA out of memory"):
        run_stage(SameFailure("CUDA out of memory. Tried to allocate 2.00 GiB"), corpus,
                  _quiet(max_same_failures=100))
    assert L.committed_shards(corpus, "digest") == []


class MixedFailures(Stage):
    """ucf101 clips fail permanently, ntu clips transiently; ``fixed`` makes transient ones
    succeed (the network came back). Records which sources it was given."""

    name = "digest"

    def __init__(self, fixed: bool = False):
        self.fixed = fixed
        self.seen: list[str] = []

    def process(self, samples):
        for s in samples:
            self.seen.append(s.row["source"])
            if "ucf101" in s.row["source"]:
                yield Result(s.key, error=SampleError(ErrorClass.PERMANENT, f"gone {s.key}"))
            elif "ntu" in s.row["source"] and not self.fixed:
                yield Result(s.key, error=SampleError(ErrorClass.TRANSIENT, f"timeout {s.key}"))
            else:
                yield Result(s.key, members={"txt": b"x"})


def test_retry_failed_redoes_transient_failures_and_leaves_permanent_ones(corpus):
    first = run_stage(MixedFailures(), corpus, _quiet())
    by_class = first["failed_by_class"]
    assert by_class["permanent"] == 2 and by_class["transient"] == 2
    before = L.read_stage_ledgers(corpus, "digest").set_index("key")
    permanent = before.index[before["error_class"] == "permanent"]
    transient = before.index[before["error_class"] == "transient"]
    stage = MixedFailures(fixed=True)
    second = run_stage(stage, corpus, _quiet(retry_failed=True))
    assert second["this_run"]["processed"] == len(transient) == 2
    assert stage.seen and not any("ucf101" in src for src in stage.seen)  # never handed over
    after = L.read_stage_ledgers(corpus, "digest").set_index("key")
    assert (after.loc[permanent, "error_class"] == "permanent").all()
    assert (after.loc[permanent, "finished_at"] == before.loc[permanent, "finished_at"]).all()
    assert (after.loc[transient, "status"] == "ok").all()
    assert second["failed_by_class"] == {**by_class, "transient": 0}


def test_partial_work_survives_and_is_reused(corpus):
    """Keys finished before a crash are not redone: their work records are kept."""
    from tmor.pipeline.workdir import WorkDir

    work = WorkDir(corpus, "digest", 0)
    plan = pd.read_parquet(Path(corpus) / "plan" / "000000.parquet")
    key = plan["key"].iloc[0]
    work.save(key, {"txt": b"precomputed"}, {"key": key, "status": "ok", "flags": []})
    run_stage(DigestStage(), corpus, _quiet())
    assert committed_view(corpus, "digest")[key] == "precomputed"
    assert not (Path(corpus) / "digest" / "_work" / "000000").exists()


def test_two_local_workers_produce_the_same_corpus(tmp_path, videos_dir, corpus):
    single = run_stage(DigestStage(), corpus, _quiet())
    df, _ = read_inputs(str(videos_dir))
    root2 = str(tmp_path / "pool")
    write_plan(root2, df, shard_size=4)
    pool = run_stage(DigestStage(), root2, _quiet(workers=2))
    assert pool["ok"] == single["ok"] == 13
    assert pool["this_run"]["processed"] == 13  # progress read from disk counts both processes
    assert committed_view(root2, "digest") == committed_view(corpus, "digest")
    workers = set(L.read_stage_ledgers(root2, "digest")["worker"])
    assert all(w.endswith("/2") for w in workers)  # done by workers of a 2-process pool


def test_slurm_executor_through_submitit_local(tmp_path, corpus, monkeypatch):
    pytest.importorskip("submitit")
    # the pickled job references this test module: let the job's interpreter import it
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    opts = _quiet(executor="slurm", num_workers=2,
                  slurm=SlurmOptions(cluster="local", folder=str(tmp_path / "slurm")))
    summary = run_stage(DigestStage(), corpus, opts)
    assert summary["ok"] == 13 and summary["shards_committed"] == 4
    card = json.loads((Path(corpus) / "corpus.json").read_text())
    assert card["digest"]["summary"]["ok"] == 13


def test_worker_index_partitions_and_steals(corpus):
    s = run_stage(DigestStage(), corpus, _quiet(worker_index=1, num_workers=2))
    assert s["shards_committed"] == 4  # takes its own shards first, then steals the rest
    assert s["this_run"]["this_worker"] == {"worker": "1/2", "shards": 4, "processed": 13,
                                            "ok": 13}
    assert s["complete"] and json.loads((Path(corpus) / "corpus.json").read_text())["digest"]


def test_fsspec_root_on_memory_filesystem(videos_dir):
    """Corpus paths are fsspec URLs: the whole cycle runs on a non-local filesystem."""
    df, _ = read_inputs(str(videos_dir))
    root = "memory://tmor-test-corpus"
    write_plan(root, df.head(5), shard_size=2)
    summary = run_stage(DigestStage(), root, _quiet())
    assert summary["ok"] == 5 and summary["shards_committed"] == 3
    assert len(committed_view(root, "digest")) == 5
    assert run_stage(DigestStage(), root, _quiet())["this_run"]["processed"] == 0


def test_a_claim_being_written_is_not_taken_over(tmp_path):
    """A claim exists empty between its O_EXCL create and its write: a second worker that reads
    it then must not call it stale (both would do the shard, and one would clear the other's
    work folder); an empty claim left long ago by a dead writer is taken over."""
    from tmor.pipeline.claims import UNWRITTEN_GRACE_S, claim_path, try_claim

    root = str(tmp_path)
    path = Path(claim_path(root, "digest", 0))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # a writer between create and write, right now
    assert try_claim(root, "digest", 0, "1/2", lease_s=1800.0) is None
    assert path.read_bytes() == b""
    old = time.time() - UNWRITTEN_GRACE_S - 1
    os.utime(path, (old, old))  # that writer died long ago
    claim = try_claim(root, "digest", 0, "1/2", lease_s=1800.0)
    assert claim is not None and json.loads(path.read_text())["worker"] == "1/2"
    claim.release()


def test_a_lock_being_written_holds_and_an_abandoned_one_does_not(tmp_path):
    from tmor.manifests.lock import UNWRITTEN_GRACE_S, is_held

    path = tmp_path / "plan.lock"
    path.write_bytes(b"")
    assert is_held(str(path), stale_s=600.0)
    old = time.time() - UNWRITTEN_GRACE_S - 1
    os.utime(path, (old, old))
    assert not is_held(str(path), stale_s=600.0)  # used to block every later run for good
