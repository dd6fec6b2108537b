"""Progress of a stage read from disk: the committed ledgers and the records of ``_work/``.

Every worker, wherever it runs (this process, a pool, Slurm array tasks, another scheduler),
leaves one record per finished key in ``<stage>/_work/NNNNNN/`` and then the shard's ledger. So
the process that shows progress polls those files, as img2dataset's logger polls its stats files,
and counts the results finished since the run started; no events cross process boundaries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tmor import fsio
from tmor.manifests import ledger as L
from tmor.manifests.plan import plan_shard_rows, shard_name
from tmor.pipeline.workdir import RECORD_SUFFIX


def _stamp(url: str) -> str | None:
    """Something that changes when the file at ``url`` is rewritten (None when absent)."""
    fs, path = fsio.filesystem(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    when = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
    return f"{when}:{info.get('size')}"


def _work_records(root: str, stage: str, shard: int) -> int:
    url = fsio.join(root, stage, "_work", shard_name(shard))
    return sum(n.endswith(RECORD_SUFFIX) and not n.startswith(".tmp-") for n in fsio.listdir(url))


def pending_counts(root: str, stage: str, shards: list[int], retry_failed: bool,
                   overwrite: bool) -> dict[int, int]:
    """shard -> samples this run may process (committed shards: only what is redone)."""
    rows = plan_shard_rows(root)
    committed = set(L.committed_shards(root, stage))
    out: dict[int, int] = {}
    for shard in shards:
        if shard in committed:
            if overwrite:
                out[shard] = len(L.read_ledger(root, stage, shard))
            elif retry_failed:
                out[shard] = len(L.retryable_keys(L.read_ledger(root, stage, shard)))
            else:
                out[shard] = 0
        else:
            done = 0 if overwrite else _work_records(root, stage, shard)
            out[shard] = max(0, rows.get(shard, 0) - done)
    return out


class StageProgress:
    """Counts (ok, failed) of the results of ``stage`` finished at or after ``since`` in
    ``shards``, from the ledgers and the work folders; each :meth:`poll` reads only what changed."""

    def __init__(self, root: str, stage: str, shards: list[int], since: float,
                 redo: bool = False):
        self.root, self.stage, self.since = root, stage, since
        self.shards = set(shards)
        committed = set(L.committed_shards(root, stage)) & self.shards
        if not redo:  # shards committed before the run are skipped: never look at them again
            self.shards -= committed
            committed = set()
        self._start_stamps = {s: _stamp(L.ledger_url(root, stage, s)) for s in committed}
        self._ledgers: dict[int, tuple[str | None, int, int]] = {}
        self._records: dict[tuple[int, str], tuple[bool, bool]] = {}  # -> (recent, ok)

    def _ledger_counts(self, shard: int, stamp: str | None) -> tuple[int, int]:
        cached = self._ledgers.get(shard)
        if cached and cached[0] == stamp:
            return cached[1], cached[2]
        df = L.read_ledger(self.root, self.stage, shard)
        recent = df.loc[df["finished_at"].astype(float) >= self.since]
        ok = int((recent["status"] == "ok").sum())
        counts = (ok, len(recent) - ok)
        self._ledgers[shard] = (stamp, *counts)
        return counts

    def _work_counts(self, shard: int) -> tuple[int, int]:
        url = fsio.join(self.root, self.stage, "_work", shard_name(shard))
        ok = failed = 0
        for name in fsio.listdir(url):
            if not name.endswith(RECORD_SUFFIX) or name.startswith(".tmp-"):
                continue
            got = self._records.get((shard, name))
            if got is None:
                try:
                    rec = json.loads(fsio.read_bytes(fsio.join(url, name)))
                except (FileNotFoundError, ValueError):
                    continue  # the shard committed and its folder went away meanwhile
                got = (float(rec.get("finished_at") or 0) >= self.since, rec.get("status") == "ok")
                self._records[(shard, name)] = got
            if got[0]:
                ok += got[1]
                failed += not got[1]
        return ok, failed

    def poll(self) -> tuple[int, int]:
        """(ok, failed) results finished since the start, over every worker."""
        committed = set(L.committed_shards(self.root, self.stage)) & self.shards
        working = {int(n) for n in fsio.listdir(fsio.join(self.root, self.stage, "_work"))
                   if n.isdigit()} & self.shards
        ok = failed = 0
        for shard in sorted(committed | working):
            stamp = None
            if shard in committed:
                cached = self._ledgers.get(shard)
                stamp = cached[0] if cached and shard not in self._start_stamps else _stamp(
                    L.ledger_url(self.root, self.stage, shard))
            if stamp is not None and stamp != self._start_stamps.get(shard):
                o, f = self._ledger_counts(shard, stamp)  # committed during this run
            elif shard in working:
                o, f = self._work_counts(shard)
            else:
                continue
            ok += o
            failed += f
        return ok, failed


class Poller:
    """Calls ``tick(ok, failed)`` with :meth:`StageProgress.poll` every ``interval_s`` in a
    thread, and once more on :meth:`stop`."""

    def __init__(self, progress: StageProgress, tick: Callable[[int, int], Any],
                 interval_s: float = 1.0):
        self.progress, self.tick, self.interval_s = progress, tick, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tmor-progress", daemon=True)
        self.counts = (0, 0)

    def _once(self) -> None:
        try:
            self.counts = self.progress.poll()
        except (OSError, ValueError):  # a file changing under us: next poll
            return
        self.tick(*self.counts)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._once()

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._once()


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True
