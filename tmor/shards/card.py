"""The corpus card ``<root>/corpus.json``: versions, stage configs, models, counts."""

from __future__ import annotations

import json
from typing import Any

from tmor import fsio

CARD_NAME = "corpus.json"


def read_corpus_card(root: str) -> dict[str, Any]:
    """The card of ``root`` ({} when there is none yet)."""
    url = fsio.join(root, CARD_NAME)
    if not fsio.exists(url):
        return {}
    return json.loads(fsio.read_bytes(url).decode("utf-8"))


def update_corpus_card(root: str, section: str, data: dict[str, Any]) -> dict[str, Any]:
    """Read-modify-write: set ``card[section] = data`` atomically; returns the whole card.

    Not safe against two concurrent writers of the same card; the runner calls it from the
    coordinating process only.
    """
    card = read_corpus_card(root)
    card[section] = data
    fsio.write_bytes(
        fsio.join(root, CARD_NAME),
        json.dumps(card, indent=2, sort_keys=True, default=str).encode("utf-8"),
    )
    return card
