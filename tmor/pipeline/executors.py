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
import subprocess
import sys
import time
import traceback
from collections import Counter
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

from tmor import fsio
from tmor.devices import pin_stage_device, worker_devices
from tmor.manifests.plan import plan_shards, planning_in_progress
from tmor.pipeline import report
from tmor.pipeline.progress import Poller, StageProgress, pending_counts, wait_until
from tmor.pipeline.runner import Event, RunnerOptions, ShardOutcome, StageFailed, run_worker
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


class NoPlan(RuntimeError):
    """The corpus has no committed plan: run `tmor-data plan` (or give the input list)."""


def wait_for_plan(root: str, timeout_s: float = 3600.0) -> list[int]:
    """The committed plan's shards; waits while another process is planning this corpus."""
    if planning_in_progress(root):
        wait_until(lambda: not planning_in_progress(root), timeout_s)
    shards = plan_shards(root)
    if not shards:
        raise NoPlan(f"{root}: no plan yet; run `tmor-data plan INPUT --root {root}` "
                     "(or give INPUT to `fetch` / `run`) first")
    return shards


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if isinstance(e, (StageFailed, NoPlan)) else f"{type(e).__name__}: {text}"


class _ProgressBar:
    """A rich progress bar fed by :class:`~tmor.pipeline.progress.Poller` counts."""

    def __init__(self, label: str, total: int, enabled: bool, console: Console):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task(label, total=total or None, counts="")

    def __call__(self, ok: int, failed: int) -> None:
        self.progress.update(self.task, completed=ok + failed, counts=f"ok {ok} failed {failed}")


def _spawned_worker(stage: Stage, root: str, opts: RunnerOptions, index: int, num: int,
                    events: Any, device: str | None = None) -> None:
    pin_stage_device(stage, device)  # worker i: cuda:(i mod G) unless --device pins one

    def forward(event: Event) -> None:
        if event[0] == "shard":
            events.put(event)

    try:
        run_worker(stage, root, opts, index, num, forward)
    except Exception as e:  # said once by the parent, as one line
        if os.environ.get("TMOR_DEBUG"):
            traceback.print_exc()
        events.put(("error", index, _one_line(e)))
        sys.exit(2)


def _run_pool(stage: Stage, root: str, opts: RunnerOptions) -> list[ShardOutcome]:
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
    outcomes: list[ShardOutcome] = []
    errors: list[str] = []
    while any(p.is_alive() for p in procs) or not events.empty():
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            continue
        if event[0] == "shard":
            outcomes.append(ShardOutcome(**event[1]))
        elif event[0] == "error":
            errors.append(f"worker {event[1]}: {event[2]}")
    for p in procs:
        p.join()
    if errors:
        more = f" (and {len(errors) - 1} more worker(s))" if len(errors) > 1 else ""
        raise StageFailed(errors[0] + more)
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} worker process(es) died (exit codes {bad}); rerun resumes")
    return outcomes


def _slurm_job(stage: Stage, root: str, opts: RunnerOptions, index: int, num: int) -> list[dict]:
    return [o.__dict__ for o in run_worker(stage, root, opts, index, num)]


def _squeue_tasks(array_id: str) -> set[str] | None:
    """Task ids ("123_4") of ``array_id`` still queued or running; None when squeue fails."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%i"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return set() if "Invalid job id" in out.stderr else None
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


def _wait_slurm(jobs: list[Any], grace_s: float = 60.0) -> None:
    """Wait for every array task by its result file and ``squeue`` (never ``sacct``: clusters
    without accounting answer it with an error per call). A task gone from the queue without a
    result for ``grace_s`` counts as finished (its result() then raises)."""
    pending = list(jobs)
    gone: dict[str, float] = {}
    last_queue = 0.0
    array_id = jobs[0].job_id.split("_")[0]
    while pending:
        pending = [j for j in pending if not j.paths.result_pickle.exists()]
        now = time.monotonic()
        if pending and now - last_queue > 5.0:
            last_queue = now
            queued = _squeue_tasks(array_id)
            if queued is not None:
                for job in list(pending):
                    if job.job_id in queued:
                        gone.pop(job.job_id, None)
                    elif now - gone.setdefault(job.job_id, now) > grace_s:
                        pending.remove(job)
        if pending:
            time.sleep(1.0)


def _run_slurm(stage: Stage, root: str, opts: RunnerOptions, console: Console
               ) -> list[ShardOutcome]:
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError("--executor slurm needs submitit: pip install 'tmor[slurm]'") from e
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
    console.print(f"submitted {n} array task(s) for {stage.name}: job "
                  f"{jobs[0].job_id.split('_')[0]}; logs in {folder}")
    if not s.wait:
        return []
    if executor.cluster == "slurm":
        _wait_slurm(jobs)
    outcomes: list[ShardOutcome] = []
    errors: list[str] = []
    for i, job in enumerate(jobs):
        try:
            outcomes += [ShardOutcome(**o) for o in job.result()]
        except Exception as e:  # the task's error, with its log
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            errors.append(f"task {i}: {lines[-1] if lines else type(e).__name__}")
    if errors:
        raise StageFailed(f"{len(errors)} of {n} array task(s) failed; {errors[0]} "
                          f"(logs in {folder})")
    return outcomes


def run_stage(
    stage: Stage, root: str, opts: RunnerOptions | None = None, console: Console | None = None
) -> dict[str, Any]:
    """Run ``stage`` over the corpus at ``root`` with ``opts``; print and return its summary.

    Progress is read from the ledgers and work folders, so it counts every worker of the run
    (pool processes, array tasks, other ``--worker-index`` workers). The corpus card's section
    is written by the process that runs the whole stage, or by a ``--worker-index`` worker that
    finds every shard committed when it ends (under the card's lock)."""
    opts = opts or RunnerOptions()
    console = console or Console()
    planned = wait_for_plan(root)
    shards = opts.shards if opts.shards is not None else planned
    unknown = sorted(set(shards) - set(planned))
    if unknown:
        raise ValueError(f"shard(s) {unknown[:5]} are not in the plan of {root} "
                         f"({len(planned)} shards: 0..{planned[-1]})")
    slot = worker_slot_from_env(opts)
    t0 = time.monotonic()
    since = time.time()
    total = sum(pending_counts(root, stage.name, shards, opts.retry_failed,
                               opts.overwrite).values())
    many = slot is not None or opts.executor == "slurm" or opts.workers > 1
    label = f"{stage.name} (all workers)" if many else stage.name
    bar = _ProgressBar(label, total, opts.progress, console)
    redo = opts.retry_failed or opts.overwrite
    local = fsio.is_local(fsio.filesystem(root)[0])
    poller = Poller(StageProgress(root, stage.name, shards, since, redo), bar,
                    interval_s=1.0 if local else 10.0)
    with bar.progress, poller:
        if slot is not None:
            outcomes = run_worker(stage, root, opts, slot[0], slot[1])
        elif opts.executor == "slurm":
            outcomes = _run_slurm(stage, root, opts, console)
        elif opts.executor == "local" and opts.workers > 1:
            outcomes = _run_pool(stage, root, opts)
        elif opts.executor == "local":
            outcomes = run_worker(stage, root, opts, 0, 1)
        else:
            raise ValueError(f"unknown executor {opts.executor!r}: use local or slurm")
    wall = time.monotonic() - t0
    ok, failed = poller.counts
    summary = report.summarize_stage(root, stage.name, wall_s=wall)
    summary["this_run"] = {"processed": ok + failed, "ok": ok, "failed": failed,
                           "wall_s": round(wall, 2),
                           "shards": dict(Counter(o.status for o in outcomes))}
    if slot is not None:
        mine = [o for o in outcomes if o.status == "committed"]
        summary["this_run"]["this_worker"] = {
            "worker": f"{slot[0]}/{slot[1]}", "shards": len(mine),
            "processed": sum(o.processed for o in mine), "ok": sum(o.ok for o in mine)}
    summary["complete"] = summary["shards_committed"] == summary["shards_planned"]
    summary["coordinator"] = slot is None
    if slot is None or summary["complete"]:
        update_corpus_card(root, stage.name, {"config": stage.card(), "summary": summary})
    console.print(report.stats_table([summary], f"{stage.name}: {root}"))
    per_worker = report.workers_table([summary])
    if per_worker is not None:
        console.print(per_worker)
    return summary
