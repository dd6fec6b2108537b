"""Importers of the T-MOR paper's transfer benchmarks from their native files.

One module per format (see ``../shared/data/benchmarks/FORMATS.md``); each writes skeleton-only
triplet shards whose json holds the sample's ids and official split membership, and whose card
holds the split lists (``--split-train NAME`` reads them) and the classes. :data:`FORMATS` maps a
``tmor-data import --format`` name to its importer, called as
``importer(paths, out_root, annotations=, splits=, classes=, fps=, samples_per_shard=)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tmor.shards.benchmarks.charades import import_charades
from tmor.shards.benchmarks.kinect_v1 import import_kinect_v1
from tmor.shards.benchmarks.penn_action import import_penn_action
from tmor.shards.benchmarks.pku_mmd import import_pku_mmd
from tmor.shards.benchmarks.smarthome import import_smarthome
from tmor.shards.benchmarks.tsu import import_tsu
from tmor.shards.benchmarks.uav_human import import_uav_human

FORMATS: dict[str, Callable[..., dict[str, Any]]] = {
    "penn_action": import_penn_action,
    "smarthome": import_smarthome,
    "tsu": import_tsu,
    "uav_human": import_uav_human,
    "pku_mmd": import_pku_mmd,
    "charades": import_charades,
    "kinect_v1": import_kinect_v1,
}


def import_benchmark(fmt: str, paths: Sequence[str], out_root: str, **options: Any
                     ) -> dict[str, Any]:
    """Import ``paths`` of benchmark format ``fmt`` into ``<out_root>/triplets``; options that
    are None are left to the importer's defaults."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown benchmark format {fmt!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt](list(paths), out_root,
                        **{k: v for k, v in options.items() if v is not None})
