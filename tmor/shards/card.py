"""The corpus card ``<root>/corpus.json``: versions, stage configs, models, counts."""

from __future__ import annotations

import json
from typing import Any

from tmor import fsio
from tmor.manifests.lock import file_lock

CARD_NAME = "corpus.json"


def read_corpus_card(root: str) -> dict[str, Any]:
    """The card of ``root`` ({} when there is none yet)."""
    url = fsio.join(root, CARD_NAME)
    if not fsio.exists(url):
        return {}
    return json.loads(fsio.read_bytes(url).decode("utf-8"))


def card_lock_url(root: str) -> str:
    return fsio.join(root, ".corpus.json.lock")


def update_corpus_card(root: str, section: str, data: dict[str, Any]) -> dict[str, Any]:
    """Set ``card[section] = data``; returns the whole card. The read-modify-write runs under the
    card's lock and the file is replaced atomically, so concurrent writers of different sections
    (workers of several stages, or several workers of one) never lose each other's updates."""
    with file_lock(card_lock_url(root), timeout_s=120.0, stale_s=120.0):
        card = read_corpus_card(root)
        card[section] = data
        fsio.write_bytes(
            fsio.join(root, CARD_NAME),
            json.dumps(card, indent=2, sort_keys=True, default=str).encode("utf-8"),
        )
    return card
