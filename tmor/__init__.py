"""tmor: skeleton / video / text corpora and T-MOR pre-training for action recognition.

The public Python API (docs/api.md) is reached from here, e.g. ``tmor.load_encoder(path)`` or
``tmor.read_triplets(urls)``. Each name is imported on first use (PEP 562), so ``import tmor``
stays light: torch is imported only by the names that need it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_API: dict[str, str] = {
    # corpora (no torch)
    "read_triplets": "tmor.shards.stream",
    "import_pyskl": "tmor.shards.importers",
    "export_pyskl": "tmor.shards.exporters",
    # the encoder and training (torch)
    "load_encoder": "tmor.train.encoder",
    "Encoder": "tmor.train.encoder",
    "UNIK": "tmor.model.unik",
    "ReaderConfig": "tmor.shards.reader",
    "make_loader": "tmor.shards.reader",
    "PretrainConfig": "tmor.train.config",
    "run_pretrain": "tmor.train.pretrain",
    "embed_to_parquet": "tmor.train.embed",
    "ClassifyConfig": "tmor.train.classify",
    "run_classification": "tmor.train.classify",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tmor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
