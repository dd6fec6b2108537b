"""Executors: where the workers of a stage run. Each runs :func:`tmor.pipeline.runner.run_worker`.

- local, 1 worker: in this process;
- local, N workers: N spawned processes pulling shards from the same plan (claims prevent doubles);
- slurm: a submitit job array of ``num_workers`` tasks (the same pickled job runs under
  submitit's local executor in tests);
- ``--worker-index/--num-workers`` (or SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT): this
  process is one worker of an outside scheduler.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tmor.devices import pin_stage_device, worker_devices
from tmor.manifests import ledger as L
from tmor.manifests.plan import plan_shards, read_plan_shard
from tmor.pipeline import report
from tmor.pipeline.runner import Event, RunnerOptions, ShardOutcome, run_worker
from tmor.pipeline.stage import Stage
from tmor.shards.card import update_corpus_card


def worker_slot_from_env(opts: RunnerOptions) -> tuple[int, int] | None:
    """(index, count) when this process is one worker of an outside scheduler."""
    if opts.worker_index is not None:
        return opts.worker_index, opts.num_workers or 1
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is not None and opts.executor == "local":
        lo = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", "1"))
        return int(task) - lo, count
    return None


def pending_samples(stage: Stage, root: str, opts: RunnerOptions) -> int:
    """How many samples this run may process (the progress bar's total)."""
    total = 0
    for shard in opts.shards if opts.shards is not None else plan_shards(root):
        if L.is_committed(root, stage.name, shard):
            if opts.overwrite:
                total += len(L.read_ledger(root, stage.name, shard))
            elif opts.retry_failed:
                total += len(L.retryable_keys(L.read_ledger(root, stage.name, shard)))
        else:
            total += len(read_plan_shard(root, shard))
    return total


class _ProgressSink:
    """Turns worker events into a rich progress bar with ok / failed counts."""

    def __init__(self, stage: str, total: int, enabled: bool, console: Console):
        self.ok = self.failed = 0
        self.outcomes: list[ShardOutcome] = []
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task(stage, total=total or None, counts="")

    def __call__(self, event: Event) -> None:
        if event[0] == "result":
            if event[1]:
                self.ok += 1
            else:
                self.failed += 1
            self.progress.update(
                self.task, advance=1, counts=f"ok {self.ok} failed {self.failed}"
            )
        elif event[0] == "shard":
            self.outcomes.append(ShardOutcome(**event[1]))


def _spawned_worker(stage: Stage, root: str, opts: RunnerOptions, index: int, num: int,
                    events: Any, device: str | None = None) -> None:
    pin_stage_device(stage, device)  # worker i: cuda:(i mod G) unless --device pins one
    run_worker(stage, root, opts, index, num, events.put)


def _run_pool(stage: Stage, root: str, opts: RunnerOptions, sink: Callable[[Event], None]) -> None:
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    n = opts.workers
    devices = worker_devices(stage, n)
    procs = [
        ctx.Process(target=_spawned_worker, args=(stage, root, opts, i, n, events, devices[i]),
                    daemon=False)
        for i in range(n)
    ]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs) or not events.empty():
        try:
            sink(events.get(timeout=0.2))
        except queue.Empty:
            pass
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} worker process(es) died (exit codes {bad}); rerun resumes")


def _slurm_job(stage: Stage, root: str, opts: RunnerOptions, index: int, num: int) -> list[dict]:
    return [o.__dict__ for o in run_worker(stage, root, opts, index, num)]


def _run_slurm(stage: Stage, root: str, opts: RunnerOptions, sink: Callable[[Event], None]) -> None:
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError("--executor slurm needs submitit: pip install 'tmor[slurm]'") from e
    from tmor import fsio

    s = opts.slurm
    folder = s.folder or fsio.join(root, "_slurm", stage.name)
    executor = submitit.AutoExecutor(folder=folder, cluster=s.cluster)
    params: dict[str, Any] = {
        "timeout_min": s.time_min,
        "cpus_per_task": s.cpus_per_task,
        "mem_gb": s.mem_gb,
        "slurm_array_parallelism": s.array_parallelism,
        "name": f"tmor-{stage.name}",
    }
    if s.gpus_per_task:
        params["gpus_per_node"] = s.gpus_per_task
    if s.partition:
        params["slurm_partition"] = s.partition
    executor.update_parameters(**params)
    n = opts.num_workers or opts.workers
    jobs = executor.map_array(
        _slurm_job, [stage] * n, [root] * n, [opts] * n, list(range(n)), [n] * n
    )
    print(f"submitted {n} array task(s) for {stage.name}: job {jobs[0].job_id.split('_')[0]}")
    if not s.wait:
        return
    for job in jobs:
        for outcome in job.result():  # raises with the task's traceback if it failed
            sink(("shard", outcome))


def run_stage(
    stage: Stage, root: str, opts: RunnerOptions | None = None, console: Console | None = None
) -> dict[str, Any]:
    """Run ``stage`` over the corpus at ``root`` with ``opts``; print and return its summary."""
    opts = opts or RunnerOptions()
    console = console or Console()
    if not plan_shards(root):
        raise RuntimeError(f"{root}: no plan yet; run `tmor-data fetch INPUT --root {root}` first")
    t0 = time.monotonic()
    sink = _ProgressSink(stage.name, pending_samples(stage, root, opts), opts.progress, console)
    slot = worker_slot_from_env(opts)
    with sink.progress:
        if slot is not None:
            run_worker(stage, root, opts, slot[0], slot[1], sink)
        elif opts.executor == "slurm":
            _run_slurm(stage, root, opts, sink)
        elif opts.executor == "local" and opts.workers > 1:
            _run_pool(stage, root, opts, sink)
        elif opts.executor == "local":
            run_worker(stage, root, opts, 0, 1, sink)
        else:
            raise ValueError(f"unknown executor {opts.executor!r}: use local or slurm")
    wall = time.monotonic() - t0
    summary = report.summarize_stage(root, stage.name, wall_s=wall)
    summary["this_run"] = {"processed": sink.ok + sink.failed, "ok": sink.ok,
                           "failed": sink.failed, "wall_s": round(wall, 2)}
    update_corpus_card(root, stage.name, {"config": stage.card(), "summary": summary})
    console.print(report.stats_table([summary], f"{stage.name}: {root}"))
    return summary
