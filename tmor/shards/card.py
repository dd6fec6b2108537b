"""The corpus card ``<root>/corpus.json``: versions, stage configs, models and their hashes, counts."""

from __future__ import annotations

import json
import platform
import time
from typing import Any

from tmor import __version__, fsio


def card_url(root: str) -> str:
    return fsio.join(root, "corpus.json")


def read_corpus_card(root: str) -> dict[str, Any]:
    """The card as a dict (empty when the corpus has none yet)."""
    url = card_url(root)
    return json.loads(fsio.read_bytes(url)) if fsio.exists(url) else {}


def update_corpus_card(root: str, section: str, data: dict[str, Any]) -> dict[str, Any]:
    """Replace one section of the card (read-modify-write; the launching process calls it)."""
    card = read_corpus_card(root)
    card.setdefault("tmor_version", __version__)
    card["python"] = platform.python_version()
    card[section] = {**data, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    fsio.write_bytes(card_url(root), json.dumps(card, indent=2, default=str).encode())
    return card
