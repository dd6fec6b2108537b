"""Atomic shard claims, so that many workers (processes, array tasks, hosts) pull from one plan
without doing a shard twice.

A claim is ``<root>/<stage>/_claims/NNNNNN.claim``, created with O_EXCL. Its holder touches it as
it works; a claim is stale when its process is gone (same host) or it was not touched for
``lease_s`` seconds (any host). A stale claim is taken over by renaming it away first, which only
one contender can do. On object stores (no O_EXCL) claims are best-effort: give each worker its
own ``--worker-index`` there.
"""

from __future__ import annotations

import json
import os
import time
import uuid

from tmor import fsio
from tmor.manifests.lock import HOST, UNWRITTEN_GRACE_S, pid_alive
from tmor.manifests.plan import shard_name


def claim_path(root: str, stage: str, shard: int) -> str:
    return fsio.join(root, stage, "_claims", f"{shard_name(shard)}.claim")


def _is_stale(path: str, lease_s: float) -> bool:
    try:
        age = time.time() - os.path.getmtime(path)
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        return True
    except ValueError:  # empty or half-written
        return age > min(UNWRITTEN_GRACE_S, lease_s)
    if info.get("host") == HOST and not pid_alive(int(info.get("pid", -1))):
        return True
    return age > lease_s


class Claim:
    """A held claim on one shard; :meth:`touch` renews it, :meth:`release` drops it."""

    def __init__(self, path: str):
        self.path = path
        self._last_touch = 0.0

    def touch(self) -> None:
        now = time.monotonic()
        if now - self._last_touch > 5.0:
            fs, p = fsio.filesystem(self.path)
            if fsio.is_local(fs):
                os.utime(p)
            self._last_touch = now

    def release(self) -> None:
        fsio.remove(self.path)


def try_claim(root: str, stage: str, shard: int, worker: str, lease_s: float) -> Claim | None:
    """Claim ``shard`` for this process, or None when a live worker holds it."""
    url = claim_path(root, stage, shard)
    fs, path = fsio.filesystem(url)
    body = json.dumps({"host": HOST, "pid": os.getpid(), "worker": worker, "time": time.time()})
    if not fsio.is_local(fs):
        if fs.exists(path):
            return None
        fsio.write_bytes(url, body.encode())
        return Claim(url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _is_stale(path, lease_s):
                return None
            grave = f"{path}.stale-{uuid.uuid4().hex}"
            try:
                os.rename(path, grave)  # only one contender wins this rename
            except FileNotFoundError:
                continue
            os.unlink(grave)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(body)
        return Claim(path)
    return None
