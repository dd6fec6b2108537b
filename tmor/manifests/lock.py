"""A cross-process lock file for short critical sections (planning, the corpus card).

``<path>`` is created with O_EXCL and holds the holder's host and pid. A lock is stale when its
process is gone (same host) or it is older than ``stale_s`` (any host); a stale lock is renamed
away first, which only one contender can do. On object stores (no O_EXCL) locking is a no-op:
plan from one process there.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tmor import fsio

HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# lock and claim files are created empty and written a moment later: one still unreadable after
# this long lost its writer between the two; a younger one is being written right now
UNWRITTEN_GRACE_S = 60.0


def is_held(path: str, stale_s: float) -> bool:
    """True when a live holder has the lock at local ``path``."""
    try:
        age = time.time() - os.path.getmtime(path)
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # there, but unreadable to us: assume a holder
    except ValueError:  # empty or half-written
        return age <= min(UNWRITTEN_GRACE_S, stale_s)
    if info.get("host") == HOST and not pid_alive(int(info.get("pid", -1))):
        return False
    return age <= stale_s


def _try_take(path: str, stale_s: float) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if is_held(path, stale_s):
            return False
        grave = f"{path}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(path, grave)  # only one contender wins this rename
            os.unlink(grave)
        except FileNotFoundError:
            pass
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": HOST, "pid": os.getpid(), "time": time.time()}, f)
    return True


@contextmanager
def file_lock(url: str, timeout_s: float = 600.0, stale_s: float = 600.0) -> Iterator[None]:
    """Hold the lock file ``url`` for the ``with`` block; waits up to ``timeout_s`` for it."""
    fs, path = fsio.filesystem(url)
    if not fsio.is_local(fs):
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while not _try_take(path, stale_s):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: held by another process for over {timeout_s:.0f} s")
        time.sleep(0.1)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def lock_held(url: str, stale_s: float = 600.0) -> bool:
    """True when another live process holds the lock file ``url`` (always False off local)."""
    fs, path = fsio.filesystem(url)
    return fsio.is_local(fs) and is_held(path, stale_s)
