"""Helpers shared by the benchmark importers: file lists, split bookkeeping, writing shards.

Every importer turns native files into skeleton-only triplets whose json carries the sample's ids
(``meta["ids"]``: subject, camera, view, setup, ... as the benchmark names them), the official
class id (``meta["label_id"]``), the benchmark (``meta["benchmark"]``) and the names of every
official split the sample belongs to (``meta["splits"]``). The corpus card's ``import`` section
gets the same membership as ``split: {name: [sample names]}`` (what ``--split-train NAME`` reads),
the class list, and counts of what was dropped and why.

Every reader of a native file names that file in its errors (:func:`tmor.shards.checks.naming`),
and an import that finds no file of its format, or yields no sample, is an error.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tmor.shards.checks import DataError, names_file, read_input
from tmor.shards.codec import Triplet


def expand_paths(paths: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """Files of ``paths``: a folder contributes its files matching any of ``patterns`` (sorted,
    recursive); a file is kept as given."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found: set[str] = set()
            for pat in patterns:
                found.update(glob.glob(os.path.join(p, "**", pat), recursive=True))
            out += sorted(found)
        else:
            out.append(str(p))
    return out


def input_files(paths: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """:func:`expand_paths`, refusing inputs that hold no file of the format."""
    found = expand_paths(paths, patterns)
    if not found:
        raise DataError(f"{', '.join(map(str, paths))}: no {' / '.join(patterns)} file found "
                        "(is this the right --format?)")
    return found


def stem(path: str, suffixes: Sequence[str] = ()) -> str:
    """File name without folder, extension and any of ``suffixes`` (e.g. ``_pose3d``)."""
    name = os.path.splitext(os.path.basename(path))[0]
    for s in suffixes:
        if name.endswith(s):
            name = name[: -len(s)]
    return name


@names_file
def read_lines(url: str) -> list[str]:
    """Non-empty stripped lines of a text file."""
    return [ln.strip() for ln in read_input(url).decode("utf-8").splitlines() if ln.strip()]


@names_file
def read_class_list(url: str) -> list[str]:
    """Class names, one a line, in id order; a leading id column (``0\\tEnter``,
    ``c000 Holding ...``) is dropped when every line has one."""
    rows = read_lines(url)
    if not rows:
        raise DataError("no class names (empty file)")
    split = [r.split(None, 1) for r in rows]
    if split and all(len(s) == 2 and (s[0].isdigit() or s[0][1:].isdigit()) for s in split):
        return [s[1].strip() for s in split]
    return rows


class SplitBook:
    """Collects split membership while samples stream past, for the corpus card."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.split: dict[str, list[str]] = {n: [] for n in names}
        self.dropped: dict[str, int] = {}

    def add(self, sample: str, member_of: Iterable[str]) -> list[str]:
        """Record ``sample`` in each split of ``member_of``; returns the sorted names."""
        names = sorted(set(member_of))
        for n in names:
            self.split.setdefault(n, []).append(sample)
        return names

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.split.items()}


def tracked(triplets: Iterable[Triplet], book: SplitBook) -> Iterator[Triplet]:
    """Pass triplets through, recording each one's ``meta["splits"]`` in ``book``."""
    for t in triplets:
        t.meta["splits"] = book.add(str(t.meta.get("frame_dir", t.key)), t.meta.get("splits", []))
        yield t


def write_benchmark(
    out_root: str, triplets: Iterable[Triplet], book: SplitBook, info: dict[str, Any],
    samples_per_shard: int = 1000, overwrite: bool = False, inputs: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the triplets through :func:`tmor.shards.importers.write_imported` (a transaction);
    the card gets the split membership, ``info`` and the drop counts."""
    from tmor.shards.importers import write_imported

    def dropped() -> dict[str, Any]:
        return {"dropped": dict(book.dropped)} if book.dropped else {}

    summary = write_imported(out_root, tracked(triplets, book), samples_per_shard,
                             {**info, "split": book.split}, overwrite, inputs, dropped)
    return {**summary, "split_counts": book.counts()}
