"""Map a stage over the shards of the plan: claims, resume, commit, executors, progress, stats.

A shard is the unit of work and of commit. For each shard the runner reads the plan rows and the
upstream payloads, feeds the samples not yet done to :meth:`Stage.process`, keeps each result in
the shard's work folder as it arrives, and commits: the tar under a temporary name then renamed,
the ledger last. Executors: ``local`` (this process, or a pool of ``workers`` processes) and
``slurm`` (submitit job arrays); any other scheduler runs ``--worker-index/--num-workers``.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tmor import fsio
from tmor.config import ConfigError, rules
from tmor.errors import ErrorClass, SampleError
from tmor.manifests import ledger as L
from tmor.manifests.plan import plan_shards, read_plan_shard
from tmor.pipeline.claims import try_claim
from tmor.pipeline.stage import Result, Sample, Stage
from tmor.pipeline.workdir import WorkDir
from tmor.shards.tario import iter_tar_samples, read_tar_samples, write_tar_samples


@rules(time_min=">= 1", gpus_per_task=">= 0", cpus_per_task=">= 1", mem_gb=">= 1",
       array_parallelism=">= 1")
@dataclass
class SlurmOptions:
    """Slurm job-array settings (through submitit)."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_task: int = 0
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 64
    folder: str | None = None  # submitit logs; default <root>/_slurm/<stage> (a shared filesystem)
    cluster: str | None = None  # None: slurm; "local" / "debug": submitit's local executors (tests)
    wait: bool = True


@rules(workers=">= 1", executor="local | slurm", worker_index=">= 0", num_workers=">= 1",
       shards=">= 0", lease_s="> 0", max_same_failures=">= 1")
@dataclass
class RunnerOptions:
    """How a stage is run; every field is a CLI option and a YAML key under ``runner:``."""

    workers: int = 1
    executor: str = "local"
    worker_index: int | None = None
    num_workers: int | None = None
    retry_failed: bool = False
    overwrite: bool = False
    shards: list[int] | None = None
    lease_s: float = 1800.0
    progress: bool = True
    # the first this-many results of a shard failing the same unexpected way stop the worker
    max_same_failures: int = 8
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def check(self) -> None:
        """Rules between fields (each field's own are in the table above)."""
        if self.worker_index is not None and self.worker_index >= (self.num_workers or 1):
            raise ConfigError(f"--worker-index must be below --worker-count "
                              f"({self.num_workers or 1}), got {self.worker_index}")


@dataclass
class ShardOutcome:
    shard: int
    status: str  # "committed" | "skipped:<why>"
    processed: int = 0
    ok: int = 0
    failed: int = 0


Event = tuple  # ("result", ok, error_class) | ("shard", ShardOutcome fields as dict)


class StageFailed(RuntimeError):
    """The stage failed as a whole, not one sample (a crash, a broken model or device, or the
    first samples of a shard all failing the same unexpected way): the worker stops and the shard
    stays uncommitted, its finished keys kept in ``<stage>/_work/`` for the rerun."""


#: per-sample messages that are about the machine or the model, never about the sample
_FATAL = re.compile(
    r"CUDA|cuDNN|CUBLAS|NCCL|out of memory|device-side assert|OutOfMemoryError|MemoryError"
)


def is_fatal_message(message: str) -> bool:
    """True for an error message that names a device / memory / model failure."""
    return bool(_FATAL.search(message or ""))


def worker_identity(index: int, num: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}/{num}"


def _result_row(result: Result, worker: str, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": result.key,
        "status": "ok" if result.ok else "failed",
        "error_class": None if result.ok else result.error.error_class.value,
        "error": None if result.ok else result.error.message[:2000],
        "flags": list(result.flags),
        "seconds": float(result.record.get("seconds", seconds)),
        "worker": worker,
        "finished_at": time.time(),
    }
    for k, v in result.record.items():
        if k not in row:
            row[k] = v
    return row


def _samples(
    stage: Stage, root: str, shard: int, plan_rows: dict[str, dict], todo: list[str],
    records: dict[str, dict[str, dict]],
) -> Iterator[Sample]:
    """Samples of ``todo`` in tar order; the first tar-need is streamed, the others loaded."""
    tar_needs = [(n, exts) for n, exts in stage.needs.items() if exts]
    loaded = {
        n: read_tar_samples(L.tar_url(root, n, shard)) for n, _ in tar_needs[1:]
    }
    wanted = set(todo)

    def make(key: str, primary: dict[str, dict[str, bytes]]) -> Sample:
        members = dict(primary)
        for n, exts in tar_needs[1:]:
            got = loaded[n].get(key, {})
            members[n] = {e: got[e] for e in exts if e in got}
        return Sample(
            key=key,
            row=plan_rows[key],
            records={n: records[n][key] for n in stage.needs},
            members=members,
        )

    if not tar_needs:
        for key in todo:
            yield make(key, {})
        return
    name, exts = tar_needs[0]
    url = L.tar_url(root, name, shard)
    with fsio.open_url(url, "rb") as f:
        for key, group in iter_tar_samples(f, url):
            if key in wanted:
                yield make(key, {name: {e: group[e] for e in exts if e in group}})


def process_shard(
    stage: Stage,
    root: str,
    shard: int,
    opts: RunnerOptions,
    worker: str,
    on_event: Callable[[Event], None],
    ensure_setup: Callable[[], None],
) -> ShardOutcome:
    """Do (or resume, or retry) one shard of ``stage`` and commit it."""
    name = stage.name
    committed = L.is_committed(root, name, shard)
    if committed and not (opts.overwrite or opts.retry_failed):
        # a work folder left behind by a worker that died between commit and cleanup; a live
        # holder of the claim may still be removing its own, so clean up only under the claim
        leftover = try_claim(root, name, shard, worker, opts.lease_s)
        if leftover is not None:
            try:
                WorkDir(root, name, shard).clear()
            finally:
                leftover.release()
        return ShardOutcome(shard, "skipped:committed")
    if committed and opts.retry_failed and not opts.overwrite:
        if not L.retryable_keys(L.read_ledger(root, name, shard)):
            return ShardOutcome(shard, "skipped:no-retryable-failures")
    for need in stage.needs:
        if not L.is_committed(root, need, shard):
            return ShardOutcome(shard, f"skipped:{need}-not-committed")
    claim = try_claim(root, name, shard, worker, opts.lease_s)
    if claim is None:
        return ShardOutcome(shard, "skipped:claimed-by-another-worker")
    try:
        if L.is_committed(root, name, shard) != committed:
            return ShardOutcome(shard, "skipped:committed-by-another-worker")
        work = WorkDir(root, name, shard)
        if opts.overwrite:
            work.clear()
        plan = read_plan_shard(root, shard)
        plan_rows = {r["key"]: r for r in plan.to_dict("records")}
        records = {n: L.ok_records(root, n, shard) for n in stage.needs}
        eligible = [k for k in plan_rows if all(k in records[n] for n in stage.needs)]
        if committed and not opts.overwrite:
            _seed_from_commit(root, name, shard, work)
        done = work.done_records()
        todo = [k for k in eligible if k not in done]
        if todo:
            ensure_setup()
            _run_samples(stage, root, shard, plan_rows, todo, records, work, worker, claim,
                         on_event, opts.max_same_failures)
        rows = _commit(stage, root, shard, eligible, work)
        work.clear()
        ok = sum(r["status"] == "ok" for r in rows)
        return ShardOutcome(shard, "committed", len(todo), ok, len(rows) - ok)
    finally:
        claim.release()


def _seed_from_commit(root: str, name: str, shard: int, work: WorkDir) -> None:
    """--retry-failed: keep the committed samples that are not retryable failures."""
    ledger = L.read_ledger(root, name, shard)
    redo = L.retryable_keys(ledger)
    done = work.done_records()
    tar = L.tar_url(root, name, shard)
    payloads = read_tar_samples(tar) if fsio.exists(tar) else {}
    for row in ledger.to_dict("records"):
        key = row["key"]
        if key in redo or key in done:
            continue
        row.pop("shard", None)
        work.save(key, payloads.get(key, {}), row)


def _run_samples(
    stage: Stage, root: str, shard: int, plan_rows: dict[str, dict], todo: list[str],
    records: dict[str, dict[str, dict]], work: WorkDir, worker: str, claim: Any,
    on_event: Callable[[Event], None], max_same: int = 8,
) -> None:
    """Feed ``todo`` to the stage and keep each result in ``work`` as it arrives.

    Raises :class:`StageFailed` (nothing more saved, nothing committed) when the stage raises,
    when a result names a device / memory failure, or when the first ``max_same`` results of the
    shard are the same unexpected (transient) failure; those failures are not saved, so a rerun
    redoes them."""
    yielded: set[str] = set()
    last = time.monotonic()
    held: list[Result] = []  # leading identical transient failures, saved once proven harmless

    def save(result: Result) -> None:
        nonlocal last
        now = time.monotonic()
        row = _result_row(result, worker, now - last)
        last = now
        work.save(result.key, result.members if result.ok else {}, row)
        claim.touch()
        on_event(("result", result.ok, row["error_class"]))

    def where() -> str:
        kept = len(work.done_records())
        return (f"{stage.name} shard {shard:06d} left uncommitted; {kept} finished sample(s) "
                f"kept in {stage.name}/_work/{shard:06d}; fix the cause and rerun to resume")

    def fail(why: str) -> StageFailed:
        return StageFailed(f"{stage.name} stopped (not a per-sample failure): {why}. {where()}")

    def accept(result: Result) -> None:
        if result.key in yielded or result.key not in plan_rows:
            raise RuntimeError(f"{stage.name} yielded key {result.key!r} twice or unasked")
        yielded.add(result.key)
        if result.ok:
            for r in held:
                save(r)
            held.clear()
            save(result)
            return
        err = result.error
        message = err.message.splitlines()[0] if err.message else ""
        if is_fatal_message(err.message):
            raise fail(f"{err.error_class.value}: {message}")
        leading = held or len(yielded) == 1
        same = not held or (held[0].error.error_class == err.error_class
                            and held[0].error.message == err.message)
        if leading and same and err.error_class == ErrorClass.TRANSIENT:
            held.append(result)
            if len(held) >= max_same:
                raise fail(f"the first {len(held)} samples failed the same way: {message}")
            return
        for r in held:
            save(r)
        held.clear()
        save(result)

    try:
        for result in stage.process(_samples(stage, root, shard, plan_rows, todo, records)):
            accept(result)
    except StageFailed:
        raise
    except Exception as e:  # a bug, a broken model or device: not about one sample
        line = str(e).splitlines()[0] if str(e) else ""
        raise fail(f"{type(e).__name__}: {line}"[:1000]) from e
    for r in held:
        save(r)
    for key in todo:
        if key not in yielded:
            save(Result(key, error=SampleError(
                ErrorClass.TRANSIENT, "the stage yielded no result for this sample")))


def _commit(stage: Stage, root: str, shard: int, eligible: list[str], work: WorkDir) -> list[dict]:
    done = work.done_records()
    keys = [k for k in eligible if k in done]
    if stage.writes_tar:
        payload = (
            (k, work.members(k, done[k])) for k in keys if done[k]["status"] == "ok"
        )
        write_tar_samples(L.tar_url(root, stage.name, shard), payload)
    rows = [{c: v for c, v in done[k].items() if c != "members"} for k in keys]
    L.write_ledger(root, stage.name, shard, rows)
    return rows


def shard_order(shards: list[int], index: int, num: int) -> list[int]:
    """This worker's own shards first (shard % num == index), then the others (work stealing)."""
    mine = [s for s in shards if s % num == index]
    return mine + [s for s in shards if s % num != index]


def run_worker(
    stage: Stage,
    root: str,
    opts: RunnerOptions,
    index: int = 0,
    num: int = 1,
    on_event: Callable[[Event], None] | None = None,
) -> list[ShardOutcome]:
    """One worker: claim and process shards until none is left; the unit every executor runs."""
    on_event = on_event or (lambda e: None)
    worker = worker_identity(index, num)
    state = {"setup": False}

    def ensure_setup() -> None:
        if not state["setup"]:
            stage.setup()
            state["setup"] = True

    shards = opts.shards if opts.shards is not None else plan_shards(root)
    outcomes = []
    try:
        for shard in shard_order(shards, index, num):
            outcome = process_shard(stage, root, shard, opts, worker, on_event, ensure_setup)
            on_event(("shard", outcome.__dict__))
            outcomes.append(outcome)
    finally:
        if state["setup"]:
            stage.teardown()
    return outcomes
