"""Stage statistics from the ledgers: the table printed after each stage and by ``status``."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from tmor import fsio
from tmor.errors import ErrorClass
from tmor.manifests import ledger as L
from tmor.manifests.plan import plan_shard_rows, plan_shards
from tmor.pipeline.stages import STAGE_NAMES
from tmor.pipeline.workdir import RECORD_SUFFIX


def summarize_stage(root: str, stage: str, wall_s: float | None = None) -> dict[str, Any]:
    """Counts of one stage over its committed ledgers."""
    planned = plan_shards(root)
    df = L.read_stage_ledgers(root, stage)
    ok = df.loc[df["status"] == "ok"] if len(df) else df
    failed = df.loc[df["status"] == "failed"] if len(df) else df
    flags: Counter[str] = Counter()
    for value in df["flags"] if len(df) else []:
        flags.update(json.loads(value) if isinstance(value, str) else (value or []))
    by_class = Counter(failed["error_class"]) if len(failed) else Counter()
    out: dict[str, Any] = {
        "stage": stage,
        "shards_planned": len(planned),
        "shards_committed": len(L.committed_shards(root, stage)),
        "samples": len(df),
        "ok": len(ok),
        "failed": len(failed),
        "failed_by_class": {c.value: int(by_class.get(c.value, 0)) for c in ErrorClass},
        "flags": dict(flags),
        "seconds_per_sample": float(df["seconds"].mean()) if len(df) else None,
    }
    for column in ("bytes_downloaded", "frames"):
        if column in df:
            out[column] = int(df[column].fillna(0).sum())
    out["workers"] = worker_totals(df)
    out["in_progress"] = in_progress(root, stage)
    if wall_s:
        out["wall_s"] = wall_s
    return out


def worker_totals(df: Any) -> dict[str, dict[str, int]]:
    """worker (host:pid:index/count) -> {shards, ok, failed} of committed ledger rows."""
    if not len(df) or "worker" not in df:
        return {}
    out = {}
    for worker, rows in df.groupby(df["worker"].fillna("?").astype(str)):
        ok = int((rows["status"] == "ok").sum())
        out[str(worker)] = {"shards": int(rows["shard"].nunique()) if "shard" in rows else 0,
                            "ok": ok, "failed": len(rows) - ok}
    return out


def in_progress(root: str, stage: str) -> dict[str, int]:
    """Uncommitted shards with finished samples in ``<stage>/_work/``, and those samples."""
    committed = set(L.committed_shards(root, stage))
    shards = samples = 0
    work = fsio.join(root, stage, "_work")
    for name in fsio.listdir(work):
        if name.isdigit() and int(name) not in committed:
            shards += 1
            samples += sum(n.endswith(RECORD_SUFFIX) and not n.startswith(".tmp-")
                           for n in fsio.listdir(fsio.join(work, name)))
    return {"shards": shards, "samples": samples}


def planned_samples(root: str) -> int:
    return sum(plan_shard_rows(root).values())


def corpus_status(root: str) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready dict."""
    rows = plan_shard_rows(root)
    return {"root": root, "planned_shards": len(rows), "planned_samples": sum(rows.values()),
            "stages": [summarize_stage(root, s) for s in stages_present(root)],
            "failure_examples": {s: failure_examples(root, s, limit=3)
                                 for s in stages_present(root)}}


def stages_present(root: str) -> list[str]:
    present = set(fsio.listdir(root))
    return [s for s in STAGE_NAMES if s in present]


def stats_table(summaries: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("stage", "shards", "ok", "failed by class", "flags", "s/sample", "ok/s"):
        table.add_column(col, justify="left" if col in ("stage", "failed by class", "flags")
                         else "right")
    for s in summaries:
        by_class = ", ".join(f"{k} {v}" for k, v in s["failed_by_class"].items() if v)
        failed = f"{s['failed']} ({by_class})" if s["failed"] else "0"
        rate = f"{s['ok'] / s['wall_s']:.2f}" if s.get("wall_s") else ""
        sps = f"{s['seconds_per_sample']:.2f}" if s["seconds_per_sample"] is not None else ""
        flags = ", ".join(f"{k} {v}" for k, v in sorted(s["flags"].items()))
        shards = f"{s['shards_committed']}/{s['shards_planned']}"
        busy = s.get("in_progress") or {}
        if busy.get("shards"):
            shards += f" (+{busy['shards']} in progress, {busy['samples']} done)"
        table.add_row(s["stage"], shards, str(s["ok"]), failed, flags, sps, rate)
    return table


def workers_table(summaries: list[dict[str, Any]]) -> Table | None:
    """Per-worker totals of every stage; None when each stage had one worker."""
    if all(len(s.get("workers") or {}) <= 1 for s in summaries):
        return None
    table = Table(title="per worker")
    for col in ("stage", "worker", "shards", "ok", "failed"):
        table.add_column(col, justify="left" if col in ("stage", "worker") else "right")
    for s in summaries:
        for worker, t in sorted((s.get("workers") or {}).items()):
            table.add_row(s["stage"], worker, str(t["shards"]), str(t["ok"]), str(t["failed"]))
    return table


def failure_examples(root: str, stage: str, limit: int = 5) -> list[dict[str, Any]]:
    df = L.read_stage_ledgers(root, stage)
    if not len(df):
        return []
    failed = df.loc[df["status"] == "failed", ["key", "error_class", "error"]]
    return failed.head(limit).to_dict("records")


def print_status(root: str, console: Console | None = None) -> list[dict[str, Any]]:
    """Per-stage counts, failures by class and seconds per sample of a corpus."""
    console = console or Console()
    summaries = [summarize_stage(root, s) for s in stages_present(root)]
    console.print(f"corpus {root}: {planned_samples(root)} samples planned")
    console.print(stats_table(summaries, "tmor corpus status"))
    per_worker = workers_table(summaries)
    if per_worker is not None:
        console.print(per_worker)
    for s in summaries:
        for ex in failure_examples(root, s["stage"], limit=3):
            first = (ex["error"] or "").splitlines()[0][:160] if ex["error"] else ""
            console.print(f"  {s['stage']} {ex['key']} [{ex['error_class']}] {first}")
    return summaries
