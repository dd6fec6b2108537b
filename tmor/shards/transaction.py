"""An import is a transaction: the new corpus is written beside the root and swapped in whole.

:func:`staged_import` refuses a root that already holds a corpus (``corpus.json`` or triplet
shards) unless ``overwrite``, then yields a temporary folder beside the root (same filesystem,
``.<root name>.import-<id>``) for the importer to write ``triplets/`` and ``corpus.json`` into.
Only when the block ends without an error are they moved into the root: the old ``triplets/``
is renamed aside, the new one renamed in, the card replaced atomically (keeping the sections of
other stages, whose outputs stay), and the old shards deleted. Any error before that leaves the
root byte-identical; the temporary folder is always removed. Local renames are atomic; on object
stores a rename is a copy, so the swap is as atomic as the store allows.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tmor import fsio
from tmor.shards.card import CARD_NAME, read_corpus_card
from tmor.shards.checks import DataError

SHARD_DIR = "triplets"
#: card sections that describe the triplet shards an import replaces
REPLACED_SECTIONS = ("import", "pack")


class CorpusExistsError(DataError):
    """The root already holds a corpus and ``--overwrite`` was not given."""


def corpus_in(root: str) -> str | None:
    """What makes ``root`` a corpus (its card, its triplet shards), or None."""
    found = []
    if fsio.exists(fsio.join(root, CARD_NAME)):
        found.append(CARD_NAME)
    shards = [n for n in fsio.listdir(fsio.join(root, SHARD_DIR)) if not n.startswith(".")]
    if shards:
        found.append(f"{SHARD_DIR}/ with {len(shards)} file(s)")
    return ", ".join(found) or None


def staging_url(root: str) -> str:
    """A fresh folder name beside ``root`` on the same filesystem."""
    fs, path = fsio.filesystem(root)
    path = path.rstrip("/")
    parent, name = posixpath.split(path)
    staged = posixpath.join(parent, f".{name}.import-{uuid.uuid4().hex[:12]}")
    return staged if fsio.is_local(fs) else fs.unstrip_protocol(staged)


@contextmanager
def staged_import(root: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a staging folder for a new corpus and swap it into ``root`` when the block
    succeeds (see the module docstring); :class:`CorpusExistsError` before anything is read
    when ``root`` holds a corpus and not ``overwrite``."""
    existing = corpus_in(root)
    if existing and not overwrite:
        raise CorpusExistsError(f"{root}: already holds a corpus ({existing}); give --overwrite "
                                "to replace it, or import into another --root")
    staging = staging_url(root)
    fsio.makedirs(staging)
    try:
        yield staging
        _swap_in(staging, root)
    finally:
        fsio.remove(staging, recursive=True)


def _swap_in(staging: str, root: str) -> None:
    """Move ``staging``'s triplets/ and card into ``root``; the old triplets/ go to staging (and
    are deleted with it). A failure before the new shards are in puts the old ones back."""
    from tmor.manifests.lock import file_lock
    from tmor.shards.card import card_lock_url

    fsio.makedirs(root)
    new_dir, old_dir = fsio.join(staging, SHARD_DIR), fsio.join(staging, "replaced")
    target = fsio.join(root, SHARD_DIR)
    card = read_corpus_card(staging)
    with file_lock(card_lock_url(root), timeout_s=120.0, stale_s=120.0):
        kept = {k: v for k, v in read_corpus_card(root).items() if k not in REPLACED_SECTIONS}
        moved_old = fsio.exists(target)
        if moved_old:
            fsio.rename(target, old_dir)
        try:
            fsio.rename(new_dir, target)
        except BaseException:
            if moved_old:
                fsio.rename(old_dir, target)
            raise
        fsio.write_bytes(fsio.join(root, CARD_NAME), json.dumps(
            {**kept, **card}, indent=2, sort_keys=True, default=str).encode("utf-8"))
