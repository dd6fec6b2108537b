"""Safe reading and writing of webdataset tars.

Every reader of shards goes through :func:`iter_tar_samples`, which rejects members with absolute
paths or ``..``, links and devices, oversized members, truncated archives and duplicate keys with a
:class:`UnsafeTarError` naming the tar and the member.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Iterator
from typing import IO

from tmor import fsio

#: default ceiling on one member's size; a clip or a pose file is far below it
MAX_MEMBER_BYTES = 1 << 30


class UnsafeTarError(ValueError):
    """A tar that no reader of shards accepts (path traversal, truncation, duplicates, ...)."""


class TruncatedTarError(UnsafeTarError):
    """The tar stream ends inside a header or a member's payload (``member``: the member being
    read, None when the header itself was cut)."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


def split_member_name(name: str) -> tuple[str, str]:
    """``"abc.pose.npz"`` -> ``("abc", "pose.npz")``: webdataset keys hold no dots."""
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    return key, ext


def _check_member(tar_name: str, info: tarfile.TarInfo, max_bytes: int) -> None:
    name = info.name
    if name.startswith("/") or name.startswith("\\") or ".." in name.replace("\\", "/").split("/"):
        raise UnsafeTarError(f"{tar_name}: member {name!r} has an absolute path or '..'")
    if not info.isfile():
        raise UnsafeTarError(f"{tar_name}: member {name!r} is not a regular file")
    if info.size > max_bytes:
        raise UnsafeTarError(
            f"{tar_name}: member {name!r} is {info.size} bytes, over the limit of {max_bytes}"
        )
    if "." not in name.rsplit("/", 1)[-1]:
        raise UnsafeTarError(f"{tar_name}: member {name!r} has no extension (expected <key>.<ext>)")


def iter_tar_members(
    stream: IO[bytes], name: str = "<tar>", max_bytes: int = MAX_MEMBER_BYTES
) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, payload) of a tar stream, checking each member first."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                _check_member(name, info, max_bytes)
                f = tar.extractfile(info)
                data = f.read() if f is not None else b""
                if len(data) != info.size:
                    raise UnsafeTarError(f"{name}: member {info.name!r} is truncated")
                yield info.name, data
    except tarfile.TarError as e:  # includes ReadError on truncated headers / payloads
        raise UnsafeTarError(f"{name}: unreadable or truncated tar ({e})") from e
    except EOFError as e:
        raise UnsafeTarError(f"{name}: truncated tar ({e})") from e


def group_members(members: Iterator[tuple[str, bytes]], name: str = "<tar>"
                  ) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group consecutive (member, bytes) by key: yield (key, {ext: bytes}); reject duplicate keys
    and members. When ``members`` raises :class:`TruncatedTarError` inside the next key's member,
    the sample before it is complete and is still yielded before the error propagates."""
    seen: set[str] = set()
    key: str | None = None
    group: dict[str, bytes] = {}
    while True:
        try:
            member, data = next(members)
        except StopIteration:
            break
        except TruncatedTarError as e:
            if key is not None and e.member is not None and split_member_name(e.member)[0] != key:
                yield key, group
            raise
        k, ext = split_member_name(member)
        if k != key:
            if key is not None:
                yield key, group
            if k in seen:
                raise UnsafeTarError(f"{name}: duplicate key {k!r}")
            seen.add(k)
            key, group = k, {}
        if ext in group:
            raise UnsafeTarError(f"{name}: duplicate member {member!r}")
        group[ext] = data
    if key is not None:
        yield key, group


def iter_tar_samples(
    stream: IO[bytes], name: str = "<tar>", max_bytes: int = MAX_MEMBER_BYTES
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group consecutive members by key: yield (key, {ext: bytes}); reject duplicate keys."""
    yield from group_members(iter_tar_members(stream, name, max_bytes), name)


def read_tar_samples(url: str, max_bytes: int = MAX_MEMBER_BYTES) -> dict[str, dict[str, bytes]]:
    """All samples of a tar at ``url``, by key."""
    with fsio.open_url(url, "rb") as f:
        return dict(iter_tar_samples(f, url, max_bytes))


def write_tar_samples(url: str, samples: Iterable[tuple[str, dict[str, bytes]]]) -> int:
    """Write (key, {ext: bytes}) samples atomically as a tar; returns the number of samples."""
    n = 0
    with fsio.atomic_open(url) as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for key, members in samples:
                if "." in key or "/" in key:
                    raise ValueError(f"sample key {key!r} may not contain '.' or '/'")
                for ext in sorted(members):
                    data = members[ext]
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    info.mtime = 0  # byte-identical tars for identical samples
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
                n += 1
    return n
