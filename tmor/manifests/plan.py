"""The shard plan: ``<root>/plan/NNNNNN.parquet``, the input rows of each shard with stable keys.

Keys already planned keep their shard forever; new keys (an extended list) go into new shards, so a
reordered or extended input resumes the work already done. Inside a new batch, rows are ordered by
(source, start) so that the clips of one source video share a shard and are fetched together.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pandas as pd

from tmor import fsio

PLAN_DIR = "plan"


def shard_name(shard: int) -> str:
    return f"{shard:06d}"


def plan_url(root: str, shard: int | None = None) -> str:
    base = fsio.join(root, PLAN_DIR)
    return base if shard is None else fsio.join(base, f"{shard_name(shard)}.parquet")


def plan_shards(root: str) -> list[int]:
    """Shard indices of the plan, ascending."""
    out = []
    for name in fsio.listdir(plan_url(root)):
        stem, ext = os.path.splitext(name)
        if ext == ".parquet" and stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def read_plan_shard(root: str, shard: int) -> pd.DataFrame:
    with fsio.open_url(plan_url(root, shard), "rb") as f:
        return pd.read_parquet(f)


def read_plan(root: str) -> pd.DataFrame:
    """All planned rows (empty frame when there is no plan)."""
    frames = [read_plan_shard(root, s) for s in plan_shards(root)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass
class PlanReport:
    rows: int
    new_keys: int
    already_planned: int
    new_shards: list[int]
    total_shards: int


def _lock(root: str, timeout_s: float = 600.0) -> str | None:
    """Take the plan lock (local corpora); another planner waits for it. Returns the lock path."""
    fs, path = fsio.filesystem(plan_url(root))
    if not fsio.is_local(fs):
        return None
    os.makedirs(path, exist_ok=True)
    lock = os.path.join(path, ".lock")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return lock
        except FileExistsError:
            if time.time() - os.path.getmtime(lock) > timeout_s:
                os.unlink(lock)  # a planner that died holding the lock
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{lock}: another process is planning this corpus") from None
            time.sleep(0.2)


def write_plan(root: str, rows: pd.DataFrame, shard_size: int = 1000) -> PlanReport:
    """Add the keys of ``rows`` that are not planned yet, as new shards of ``shard_size`` rows."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    lock = _lock(root)
    try:
        existing = read_plan(root)
        known = set(existing["key"]) if len(existing) else set()
        new = rows.loc[~rows["key"].isin(known)].copy()
        new = new.sort_values(["source", "start", "key"], na_position="first", kind="stable")
        shards = plan_shards(root)
        next_shard = shards[-1] + 1 if shards else 0
        written = []
        for i in range(0, len(new), shard_size):
            part = new.iloc[i : i + shard_size].copy()
            part["shard"] = next_shard
            with fsio.atomic_open(plan_url(root, next_shard)) as f:
                part.reset_index(drop=True).to_parquet(f, index=False)
            written.append(next_shard)
            next_shard += 1
    finally:
        if lock:
            os.unlink(lock)
    return PlanReport(
        rows=len(rows),
        new_keys=len(new),
        already_planned=len(rows) - len(new),
        new_shards=written,
        total_shards=len(shards) + len(written),
    )
