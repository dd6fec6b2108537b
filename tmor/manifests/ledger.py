"""Per-stage, per-shard ledgers: ``<root>/<stage>/NNNNNN.parquet``, one row per key.

The ledger is written last, after the stage's tar, and is the shard's commit marker. Base columns:
key, status ("ok" | "failed"), error_class, error, flags (JSON list), seconds, worker, finished_at;
a stage adds its own columns.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from tmor import fsio
from tmor.errors import RETRYABLE
from tmor.manifests.plan import shard_name

BASE_COLUMNS = [
    "key", "status", "error_class", "error", "flags", "seconds", "worker", "finished_at",
]


def stage_url(root: str, stage: str) -> str:
    return fsio.join(root, stage)


def ledger_url(root: str, stage: str, shard: int) -> str:
    return fsio.join(root, stage, f"{shard_name(shard)}.parquet")


def tar_url(root: str, stage: str, shard: int) -> str:
    return fsio.join(root, stage, f"{shard_name(shard)}.tar")


def committed_shards(root: str, stage: str) -> list[int]:
    out = []
    for name in fsio.listdir(stage_url(root, stage)):
        stem, ext = os.path.splitext(name)
        if ext == ".parquet" and stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def is_committed(root: str, stage: str, shard: int) -> bool:
    return fsio.exists(ledger_url(root, stage, shard))


def read_ledger(root: str, stage: str, shard: int) -> pd.DataFrame:
    with fsio.open_url(ledger_url(root, stage, shard), "rb") as f:
        return pd.read_parquet(f)


def read_stage_ledgers(root: str, stage: str) -> pd.DataFrame:
    """Every committed ledger row of a stage, with a ``shard`` column."""
    frames = []
    for shard in committed_shards(root, stage):
        df = read_ledger(root, stage, shard)
        df["shard"] = shard
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=BASE_COLUMNS)


def ok_records(root: str, stage: str, shard: int) -> dict[str, dict[str, Any]]:
    """key -> ledger row of the committed "ok" samples of a shard (empty if not committed)."""
    if not is_committed(root, stage, shard):
        return {}
    df = read_ledger(root, stage, shard)
    df = df.loc[df["status"] == "ok"]
    return {r["key"]: r for r in df.to_dict("records")}


def retryable_keys(ledger: pd.DataFrame) -> set[str]:
    failed = ledger.loc[(ledger["status"] == "failed") & ledger["error_class"].isin(RETRYABLE)]
    return set(failed["key"])


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, default=str)
    return value


def write_ledger(root: str, stage: str, shard: int, rows: list[dict[str, Any]]) -> None:
    """Write the shard's ledger atomically: this commits the shard."""
    columns = list(BASE_COLUMNS)
    for r in rows:
        columns += [c for c in r if c not in columns]
    df = pd.DataFrame([{c: _cell(r.get(c)) for c in columns} for r in rows], columns=columns)
    with fsio.atomic_open(ledger_url(root, stage, shard)) as f:
        df.to_parquet(f, index=False)


def ledgers_stamp(root: str, stage: str) -> str:
    """A digest of the stage's committed ledgers (names, sizes, modification times): it changes
    whenever a shard is committed or recommitted."""
    import hashlib

    h = hashlib.sha256()
    for shard in committed_shards(root, stage):
        fs, path = fsio.filesystem(ledger_url(root, stage, shard))
        info = fs.info(path)
        when = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
        h.update(f"{shard}:{info.get('size')}:{when}\n".encode())
    return h.hexdigest()
