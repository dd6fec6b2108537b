"""The shard index ``<dir>/index.parquet``: key -> (shard, position, global index).

The global index numbers samples in shard order then tar order, so a sample's index is its
shard's offset plus its position in the tar: the reader needs one (offset, count) row per shard
(:func:`read_shard_table`), never a map of every key. The pre-training queue and cluster table
store these indices, so a checkpoint records :func:`index_hash` and a resume on a corpus whose
index changed (a re-run ``pack``, added or removed shards) is refused.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

from tmor import fsio
from tmor.shards.tario import iter_tar_samples

INDEX_NAME = "index.parquet"
_SHARD_RE = re.compile(r"^(\d+)\.tar$")


def shard_urls(shard_dir: str) -> list[str]:
    """The ``NNNNNN.tar`` files of a folder, in order."""
    return [fsio.join(shard_dir, n) for n in fsio.listdir(shard_dir) if _SHARD_RE.match(n)]


def build_index(shard_dir: str) -> Any:
    """A pandas DataFrame (key, shard, position, index, label, frames) over every shard."""
    import numpy as np
    import pandas as pd

    from tmor.shards.codec import decode_pose

    rows: list[dict[str, Any]] = []
    for url in shard_urls(shard_dir):
        shard = int(_SHARD_RE.match(url.rsplit("/", 1)[-1]).group(1))
        with fsio.open_url(url, "rb") as f:
            for pos, (key, members) in enumerate(iter_tar_samples(f, url)):
                frames = 0
                if "pose.npz" in members:
                    frames = int(np.shape(decode_pose(members["pose.npz"])["keypoint"])[1])
                rows.append({"key": key, "shard": shard, "position": pos, "frames": frames})
    df = pd.DataFrame(rows, columns=["key", "shard", "position", "frames"])
    if df["key"].duplicated().any():
        dup = df.loc[df["key"].duplicated(), "key"].iloc[0]
        raise ValueError(f"{shard_dir}: key {dup!r} occurs in more than one sample")
    df["index"] = np.arange(len(df), dtype=np.int64)
    return df


def write_index(shard_dir: str) -> dict[str, Any]:
    """Build and write ``<shard_dir>/index.parquet``; returns {samples, shards, per_shard}."""
    df = build_index(shard_dir)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    fsio.write_bytes(fsio.join(shard_dir, INDEX_NAME), buf.getvalue())
    per_shard = {f"{int(s):06d}": int(n) for s, n in df.groupby("shard").size().items()}
    return {"samples": int(len(df)), "shards": len(per_shard), "per_shard": per_shard}


def read_index(shard_dir: str) -> dict[str, int]:
    """key -> global index, from ``<shard_dir>/index.parquet`` ({} when absent)."""
    import pandas as pd

    url = fsio.join(shard_dir, INDEX_NAME)
    if not fsio.exists(url):
        return {}
    df = pd.read_parquet(io.BytesIO(fsio.read_bytes(url)), columns=["key", "index"])
    return dict(zip(df["key"].tolist(), df["index"].astype("int64").tolist(), strict=True))


@dataclass(frozen=True)
class ShardTable:
    """Per shard number: the global index of its first sample and its sample count."""

    offsets: dict[int, int]
    counts: dict[int, int]

    @property
    def samples(self) -> int:
        return sum(self.counts.values())

    def global_index(self, shard: int | None, position: int) -> int:
        """Offset of ``shard`` + ``position``; -1 when the shard or position is unknown."""
        if shard is None or shard not in self.offsets or position >= self.counts[shard]:
            return -1
        return self.offsets[shard] + position


def index_url(shard_dir: str) -> str:
    """``<shard_dir>/index.parquet``, or ``shard_dir`` itself when it names the file."""
    return shard_dir if shard_dir.endswith(INDEX_NAME) else fsio.join(shard_dir, INDEX_NAME)


def shard_number(url: str) -> int | None:
    """The NNNNNN of ``.../NNNNNN.tar`` (None for other names, e.g. ``pipe:`` commands)."""
    m = re.search(r"(\d+)\.tar(?:\W|$)", url.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def read_shard_table(shard_dir: str) -> ShardTable | None:
    """The (offset, count) of every shard from the index file (None when absent); reads the
    shard and index columns only."""
    import pandas as pd

    url = index_url(shard_dir)
    if not fsio.exists(url):
        return None
    df = pd.read_parquet(io.BytesIO(fsio.read_bytes(url)), columns=["shard", "index"])
    g = df.groupby("shard")["index"].agg(["min", "count"])
    return ShardTable({int(s): int(r["min"]) for s, r in g.iterrows()},
                      {int(s): int(r["count"]) for s, r in g.iterrows()})


def index_hash(shard_dir: str) -> str | None:
    """sha256 over (index, shard, position, key) of every row, in index order (None when there
    is no index): equal exactly when every global index names the same sample in the same place;
    independent of the parquet writer's version and metadata."""
    import numpy as np
    import pandas as pd

    url = index_url(shard_dir)
    if not fsio.exists(url):
        return None
    df = pd.read_parquet(io.BytesIO(fsio.read_bytes(url)),
                         columns=["key", "shard", "position", "index"]).sort_values("index")
    h = hashlib.sha256()
    for col in ("index", "shard", "position"):
        h.update(np.ascontiguousarray(df[col].to_numpy(np.int64)).tobytes())
    h.update("\n".join(df["key"].astype(str).tolist()).encode("utf-8"))
    return h.hexdigest()
