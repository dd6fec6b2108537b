"""Shards as a stream, without torch: URL expansion (brace patterns, lists, folders; local,
fsspec or ``pipe:``), one shard's samples through :mod:`tmor.shards.tarstream`'s safety checks,
a shuffle buffer, and :func:`read_triplets`, the public iterator of decoded triplets.

The streaming reader (:mod:`tmor.shards.reader`) builds its torch pipeline on these, so both
read the same bytes with the same limits and the same decoding
(:func:`tmor.shards.codec.decode_triplet`).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np

from tmor import fsio
from tmor.shards.codec import decode_triplet
from tmor.shards.tario import MAX_MEMBER_BYTES, UnsafeTarError
from tmor.shards.tarstream import TruncatedTarError, iter_samples

log = logging.getLogger(__name__)


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Brace patterns, lists, and folders of ``NNNNNN.tar`` -> a flat list of shard URLs."""
    from braceexpand import braceexpand

    from tmor.shards.index import shard_urls

    items = [urls] if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for item in items:
        for u in braceexpand(str(item)):
            if not u.startswith("pipe:") and not u.endswith(".tar"):
                fs, path = fsio.filesystem(u)
                if fs.isdir(path):
                    out.extend(shard_urls(u))
                    continue
            out.append(u)
    if not out:
        raise ValueError(f"no shards in {urls!r}")
    missing = [u for u in out if not u.startswith("pipe:") and _missing_local(u)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(out)} shard(s) missing, e.g. "
                                f"{missing[0]!r}")
    return out


def _missing_local(url: str) -> bool:
    """True for a local path that does not exist (remote URLs are not probed: one call each)."""
    fs, path = fsio.filesystem(url)
    return fsio.is_local(fs) and not fs.exists(path)


def open_shard(url: str) -> tuple[IO[bytes], subprocess.Popen | None]:
    """A binary stream of one shard: ``pipe:CMD`` runs CMD (split into argv, no shell)."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(shlex.split(url[len("pipe:"):]), stdout=subprocess.PIPE,
                                bufsize=1 << 20)
        assert proc.stdout is not None
        return proc.stdout, proc
    if "://" not in url:  # a local path: a plain buffered file
        return open(url, "rb", buffering=1 << 20), None
    return fsio.open_url(url, "rb"), None


def iter_shard(url: str, max_bytes: int = MAX_MEMBER_BYTES) -> Iterator[tuple[str, dict]]:
    """(key, members) of one shard through the safety checks (:mod:`tmor.shards.tarstream`)."""
    stream, proc = open_shard(url)
    try:
        yield from iter_samples(stream, url, max_bytes)
    finally:
        stream.close()
        if proc is not None:
            rc = proc.wait()
            if rc not in (0, -13):  # -13: SIGPIPE when we stopped reading early
                raise OSError(f"{url}: command exited with status {rc}")


def shuffle_buffer(src: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """A shuffle buffer of ``size`` (webdataset's ``shuffle`` with the buffer filled first),
    drawing from the same numpy generator as the shard order, so a run's sample order is the
    one the reader gave before it moved onto webdataset's pipeline."""
    buf: list = []
    for x in src:
        if len(buf) < size:
            buf.append(x)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], x = x, buf[j]
        yield x
    rng.shuffle(buf)
    yield from buf


def read_triplets(urls: str | Sequence[str], shuffle: bool = False, seed: int = 0,
                  buffer_size: int = 1000, skip_bad: bool = False,
                  max_member_bytes: int = MAX_MEMBER_BYTES) -> Iterator[dict[str, Any]]:
    """The triplets of a brace pattern, list or folder of shards (local paths or fsspec URLs),
    one dict each, in tar order (``shuffle``: shards in a seeded random order, then a shuffle
    buffer of ``buffer_size`` samples, as the training reader does).

    A dict holds ``key``, ``keypoint`` (M, T, V, C) float32, ``keypoint_score`` (M, T, V)
    float32, ``layout``, ``fps``, ``meta`` (the sample's json), and when present
    ``keypoint_3d`` (M, T, V, 3), ``video`` / ``text`` (D,) float16 embeddings and ``caption``.
    A tar that breaks a safety rule raises :class:`~tmor.shards.tario.UnsafeTarError`; a
    sample that does not decode, or a truncated shard, raises ValueError naming the shard,
    or with ``skip_bad`` is skipped with a warning (the training reader's rule). Needs no torch.
    """
    shards = expand_urls(urls)  # now, so that a bad pattern fails at the call
    return _records(shards, shuffle, seed, buffer_size, skip_bad, max_member_bytes)


def _records(shards: list[str], shuffle: bool, seed: int, buffer_size: int, skip_bad: bool,
             max_bytes: int) -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    if shuffle:
        shards = list(shards)
        rng.shuffle(shards)
    raw = _raw_samples(shards, skip_bad, max_bytes)
    if shuffle and buffer_size > 1:
        raw = shuffle_buffer(raw, buffer_size, rng)
    for url, key, members in raw:
        try:
            t = decode_triplet(key, members)
        except Exception as e:  # whatever fails to decode, the sample is bad
            if not skip_bad:
                raise ValueError(f"{url}: sample {key!r} does not decode: {e}") from e
            log.warning("%s: skipped sample %r that does not decode: %s", url, key, e)
            continue
        record: dict[str, Any] = {"key": t.key, "keypoint": t.keypoint,
                                  "keypoint_score": t.keypoint_score, "layout": t.layout,
                                  "fps": t.fps, "meta": t.meta}
        extras = {"keypoint_3d": t.keypoint_3d, "video": t.video, "text": t.text,
                  "caption": t.caption or None}
        record.update({k: v for k, v in extras.items() if v is not None})
        yield record


def _raw_samples(shards: list[str], skip_bad: bool, max_bytes: int
                 ) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    for url in shards:
        try:
            for key, members in iter_shard(url, max_bytes):
                yield url, key, members
        except TruncatedTarError as e:
            if not skip_bad:
                raise
            log.warning("skipped the rest of a truncated shard: %s", e)
        except UnsafeTarError:
            raise
        except OSError as e:
            if not skip_bad:
                raise
            log.warning("skipped the rest of an unreadable shard: %s", e)
