"""Filesystem access through fsspec, so every corpus path may be local, s3://, gs://, ...

Writes that other processes may observe are atomic: written to a temporary name beside the
target, flushed (fsync on local disks) and renamed.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``url`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(base: str, *parts: str) -> str:
    base = str(base)
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def makedirs(url: str) -> None:
    fs, path = filesystem(url)
    fs.makedirs(path, exist_ok=True)


def listdir(url: str) -> list[str]:
    """Base names in a folder (empty when it does not exist)."""
    fs, path = filesystem(url)
    if not fs.exists(path):
        return []
    return sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        return f.read()


def remove(url: str, recursive: bool = False) -> None:
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


@contextmanager
def atomic_open(url: str) -> Iterator[IO[bytes]]:
    """Open ``url`` for binary writing; it appears under its name only when the block succeeds."""
    fs, path = filesystem(url)
    parent = os.path.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    if is_local(fs):
        tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:  # object stores: an upload becomes visible whole when it completes
        buf = io.BytesIO()
        yield buf
        with fs.open(path, "wb") as f:
            f.write(buf.getvalue())


def write_bytes(url: str, data: bytes) -> None:
    with atomic_open(url) as f:
        f.write(data)


def rename(src: str, dst: str) -> None:
    fs, src_path = filesystem(src)
    _, dst_path = filesystem(dst)
    if is_local(fs):
        os.replace(src_path, dst_path)
    else:
        fs.mv(src_path, dst_path, recursive=True)


def open_url(url: str, mode: str = "rb", **kwargs: Any) -> IO:
    fs, path = filesystem(url)
    return fs.open(path, mode, **kwargs)
