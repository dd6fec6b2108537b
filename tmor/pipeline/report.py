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
from tmor.manifests.plan import plan_shards, read_plan_shard
from tmor.pipeline.stages import STAGE_NAMES


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
    if wall_s:
        out["wall_s"] = wall_s
    return out


def planned_samples(root: str) -> int:
    return sum(len(read_plan_shard(root, s)) for s in plan_shards(root))


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
        table.add_row(s["stage"], f"{s['shards_committed']}/{s['shards_planned']}", str(s["ok"]),
                      failed, flags, sps, rate)
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
    for s in summaries:
        for ex in failure_examples(root, s["stage"], limit=3):
            first = (ex["error"] or "").splitlines()[0][:160] if ex["error"] else ""
            console.print(f"  {s['stage']} {ex['key']} [{ex['error_class']}] {first}")
    return summaries
