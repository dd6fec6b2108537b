"""A fast, streaming reader of webdataset tars with :mod:`tmor.shards.tario`'s safety checks.

:mod:`tarfile` costs tens of microseconds per member (header objects, checksum, pax parsing);
the shard reader needs a few. Here each 512-byte header is parsed with slicing: ustar / GNU
regular files, pax (``x``) and GNU long-name (``L``) headers are understood; anything else
(links, devices, directories) is refused as tario refuses it. The same rules hold: no absolute
paths or ``..``, members below ``max_bytes``, ``<key>.<ext>`` names, no duplicate keys or
members. Security errors raise :class:`~tmor.shards.tario.UnsafeTarError`; a stream that ends
inside a header or a payload raises :class:`TruncatedTarError` (a subclass), after every
complete sample before it was yielded, so a reader can skip the rest of the shard and go on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from tmor.shards.tario import (
    MAX_MEMBER_BYTES,
    TruncatedTarError,
    UnsafeTarError,
    group_members,
)

BLOCK = 512


def _octal(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 for large numbers
        return int.from_bytes(field[1:], "big") if field[:1] == b"\x80" else -1
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _checksum_ok(header: bytes) -> bool:
    want = _octal(header[148:156])
    got = sum(header[:148]) + 256 + sum(header[156:])  # the checksum field counts as spaces
    return want == got


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None:
        data = b""
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _pax_path(payload: bytes) -> str | None:
    """The ``path`` record of a pax extended header, if any."""
    pos, path = 0, None
    while pos < len(payload):
        space = payload.find(b" ", pos)
        if space < 0:
            break
        length = int(payload[pos:space])
        record = payload[space + 1:pos + length - 1]
        k, _, v = record.partition(b"=")
        if k == b"path":
            path = v.decode("utf-8")
        pos += length
    return path


def _check_name(tar_name: str, name: str) -> None:
    if name.startswith("/") or name.startswith("\\") or ".." in name.replace("\\", "/").split("/"):
        raise UnsafeTarError(f"{tar_name}: member {name!r} has an absolute path or '..'")
    if "." not in name.rsplit("/", 1)[-1]:
        raise UnsafeTarError(f"{tar_name}: member {name!r} has no extension (expected <key>.<ext>)")


def iter_members(stream: IO[bytes], name: str = "<tar>",
                 max_bytes: int = MAX_MEMBER_BYTES) -> Iterator[tuple[str, bytes]]:
    """(member name, payload) of the regular files of a tar stream, each checked first."""
    long_name: str | None = None
    while True:
        header = _read_exact(stream, BLOCK)
        if not header:
            return  # a tar without end-of-archive blocks: accepted, as tarfile does
        if len(header) < BLOCK:
            raise TruncatedTarError(f"{name}: truncated tar (a header of {len(header)} bytes)")
        if header == bytes(BLOCK):
            return  # end-of-archive marker
        if not _checksum_ok(header):
            raise TruncatedTarError(f"{name}: unreadable or truncated tar (bad header checksum)")
        kind = header[156:157]
        size = _octal(header[124:136])
        member = header[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if header[257:262] == b"ustar" and header[345:346] != b"\0":
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            member = f"{prefix}/{member}"
        if kind in (b"x", b"L", b"g"):
            if size < 0 or size > max_bytes:
                raise UnsafeTarError(f"{name}: extended header of {size} bytes")
            payload = _read_exact(stream, size + (-size % BLOCK))
            if len(payload) < size:
                raise TruncatedTarError(f"{name}: truncated tar (extended header)")
            if kind == b"x":
                long_name = _pax_path(payload[:size]) or long_name
            elif kind == b"L":
                long_name = payload[:size].split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if long_name is not None:
            member, long_name = long_name, None
        if kind not in (b"0", b"\0", b"7"):
            raise UnsafeTarError(f"{name}: member {member!r} is not a regular file")
        _check_name(name, member)
        if size > max_bytes or size < 0:
            raise UnsafeTarError(
                f"{name}: member {member!r} is {size} bytes, over the limit of {max_bytes}")
        payload = _read_exact(stream, size)
        pad = -size % BLOCK
        if len(payload) < size or (pad and len(_read_exact(stream, pad)) < pad):
            raise TruncatedTarError(f"{name}: member {member!r} is truncated", member)
        yield member, payload


def iter_samples(stream: IO[bytes], name: str = "<tar>",
                 max_bytes: int = MAX_MEMBER_BYTES) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group consecutive members by key: yield (key, {ext: bytes}); reject duplicate keys.

    On truncation a sample known to be complete (the cut is inside the next key's member) is
    still yielded, an incomplete one dropped, and :class:`TruncatedTarError` raised.
    """
    yield from group_members(iter_members(stream, name, max_bytes), name)
