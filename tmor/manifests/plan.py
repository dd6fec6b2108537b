"""The shard plan: ``<root>/plan/NNNNNN.parquet``, the input rows of each shard with stable keys.

Keys already planned keep their shard forever; new keys (an extended list) go into new shards, so a
reordered or extended input resumes the work already done. Inside a new batch, rows are ordered by
(source, start) so that the clips of one source video share a shard and are fetched together.

``plan/_plan.json`` (the manifest) is written last, under ``plan/.lock``: it lists the committed
shards with their row counts and the fingerprints of the input lists already planned, so many
workers may run the same planning step at once and a re-plan of the same list reads nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tmor import fsio
from tmor.manifests.lock import file_lock, lock_held

PLAN_DIR = "plan"


def shard_name(shard: int) -> str:
    return f"{shard:06d}"


def plan_url(root: str, shard: int | None = None) -> str:
    base = fsio.join(root, PLAN_DIR)
    return base if shard is None else fsio.join(base, f"{shard_name(shard)}.parquet")


MANIFEST = "_plan.json"  # written last, under the plan lock: the plan's commit marker
LOCK = ".lock"
#: a planner holding the lock longer than this (on another host) is taken for dead
LOCK_TIMEOUT_S = 3600.0


def manifest_url(root: str) -> str:
    return fsio.join(root, PLAN_DIR, MANIFEST)


def lock_url(root: str) -> str:
    return fsio.join(root, PLAN_DIR, LOCK)


def read_manifest(root: str) -> dict | None:
    """The committed plan: {"shards": {"000000": rows, ...}, "inputs": [...]}; None before one."""
    url = manifest_url(root)
    if not fsio.exists(url):
        return None
    return json.loads(fsio.read_bytes(url))


def _listed_shard_rows(root: str) -> dict[int, int]:
    """shard -> rows of the plan files on disk (plans written before the manifest existed)."""
    import pyarrow.parquet as pq

    out = {}
    for name in fsio.listdir(plan_url(root)):
        stem, ext = os.path.splitext(name)
        if ext == ".parquet" and stem.isdigit():
            with fsio.open_url(plan_url(root, int(stem)), "rb") as f:
                out[int(stem)] = pq.ParquetFile(f).metadata.num_rows
    return dict(sorted(out.items()))


def plan_shard_rows(root: str) -> dict[int, int]:
    """shard -> planned rows, ascending; only committed shards (empty while a first plan is
    being written)."""
    manifest = read_manifest(root)
    if manifest is not None:
        return {int(k): int(v) for k, v in sorted(manifest["shards"].items())}
    if lock_held(lock_url(root), LOCK_TIMEOUT_S):
        return {}  # a first plan is being written: none of it is committed yet
    return _listed_shard_rows(root)


def plan_shards(root: str) -> list[int]:
    """Shard indices of the committed plan, ascending."""
    return list(plan_shard_rows(root))


def planning_in_progress(root: str) -> bool:
    """True while another process holds the plan lock."""
    return lock_held(lock_url(root), LOCK_TIMEOUT_S)


def read_plan_shard(root: str, shard: int) -> pd.DataFrame:
    with fsio.open_url(plan_url(root, shard), "rb") as f:
        return pd.read_parquet(f)


def read_plan(root: str) -> pd.DataFrame:
    """All planned rows (empty frame when there is no plan)."""
    frames = [read_plan_shard(root, s) for s in plan_shards(root)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def planned_keys(root: str, shards: list[int]) -> set[str]:
    """The keys of ``shards`` (reads only the key column)."""
    import pyarrow.parquet as pq

    keys: set[str] = set()
    for shard in shards:
        with fsio.open_url(plan_url(root, shard), "rb") as f:
            keys.update(pq.read_table(f, columns=["key"]).column(0).to_pylist())
    return keys


@dataclass
class PlanReport:
    rows: int
    new_keys: int
    already_planned: int
    new_shards: list[int]
    total_shards: int
    skipped: bool = False  # this input was planned before (same fingerprint): nothing read


def already_planned(root: str, fingerprint: str | None) -> PlanReport | None:
    """A report when the input of ``fingerprint`` is in the committed plan, else None."""
    manifest = read_manifest(root)
    if fingerprint is None or manifest is None:
        return None
    for entry in manifest.get("inputs", []):
        if entry.get("fingerprint") == fingerprint:
            return PlanReport(rows=int(entry.get("rows", 0)), new_keys=0,
                              already_planned=int(entry.get("rows", 0)), new_shards=[],
                              total_shards=len(manifest["shards"]), skipped=True)
    return None


def _write_shards(root: str, rows: pd.DataFrame, first: int, shard_size: int) -> dict[int, int]:
    """Write ``rows`` as shards ``first, first + 1, ...`` (each file atomic, several at once);
    returns shard -> rows."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
    jobs = {first + i // shard_size: table.slice(i, shard_size)
            for i in range(0, table.num_rows, shard_size)}

    def write(shard: int) -> None:
        part = jobs[shard]
        part = part.append_column("shard", pa.array(np.full(part.num_rows, shard, np.int64)))
        with fsio.atomic_open(plan_url(root, shard)) as f:
            pq.write_table(part, f)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, jobs))
    return {shard: jobs[shard].num_rows for shard in jobs}


def write_plan(root: str, rows: pd.DataFrame | Callable[[], pd.DataFrame],
               shard_size: int = 1000, fingerprint: str | None = None,
               source: str | None = None) -> PlanReport:
    """Add the keys of ``rows`` that are not planned yet, as new shards of ``shard_size`` rows.

    Idempotent and safe to run from many workers at once: it runs under the plan lock, and the
    manifest, written last, commits the new shards. ``rows`` may be a function that reads them,
    called only when the input (``fingerprint``) is not in the plan yet."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    done = already_planned(root, fingerprint)
    if done is not None:
        return done
    with file_lock(lock_url(root), timeout_s=LOCK_TIMEOUT_S, stale_s=LOCK_TIMEOUT_S):
        done = already_planned(root, fingerprint)
        if done is not None:
            return done
        manifest = read_manifest(root)
        # without a manifest (a plan from before it existed), the shard files are the plan
        counts = _listed_shard_rows(root) if manifest is None else {
            int(k): int(v) for k, v in manifest["shards"].items()}
        table = rows() if callable(rows) else rows
        known = planned_keys(root, list(counts))
        new = table.loc[~table["key"].isin(known)] if known else table
        new = new.sort_values(["source", "start", "key"], na_position="first", kind="stable")
        next_shard = max(counts) + 1 if counts else 0
        written = _write_shards(root, new, next_shard, shard_size)
        counts.update(written)
        inputs = list((manifest or {}).get("inputs", []))
        if fingerprint is not None:
            inputs.append({"source": source, "fingerprint": fingerprint, "rows": len(table),
                           "new_keys": len(new), "planned_at": time.time()})
        body = {"version": 1, "shards": {shard_name(k): v for k, v in sorted(counts.items())},
                "inputs": inputs}
        fsio.write_bytes(manifest_url(root), json.dumps(body, indent=1).encode())
    return PlanReport(
        rows=len(table),
        new_keys=len(new),
        already_planned=len(table) - len(new),
        new_shards=list(written),
        total_shards=len(counts),
    )
