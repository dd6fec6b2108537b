"""Write triplet samples into numbered shards ``<dir>/NNNNNN.tar`` of a target sample count."""

from __future__ import annotations

from collections.abc import Iterable

from tmor import fsio
from tmor.shards.codec import Triplet, encode_triplet
from tmor.shards.tario import write_tar_samples


def shard_name(index: int) -> str:
    return f"{index:06d}.tar"


def write_triplet_shards(
    out_dir: str, triplets: Iterable[Triplet], samples_per_shard: int = 1000, first_shard: int = 0
) -> list[str]:
    """Write ``triplets`` as consecutive shards; returns the shard URLs written."""
    if samples_per_shard < 1:
        raise ValueError("samples_per_shard must be >= 1")
    fsio.makedirs(out_dir)
    urls: list[str] = []
    batch: list[tuple[str, dict[str, bytes]]] = []
    seen: set[str] = set()

    def flush() -> None:
        url = fsio.join(out_dir, shard_name(first_shard + len(urls)))
        write_tar_samples(url, batch)
        urls.append(url)
        batch.clear()

    for t in triplets:
        if t.key in seen:
            raise ValueError(f"duplicate key {t.key!r}")
        seen.add(t.key)
        batch.append((t.key, encode_triplet(t)))
        if len(batch) >= samples_per_shard:
            flush()
    if batch:
        flush()
    return urls
