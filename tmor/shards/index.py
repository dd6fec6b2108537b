"""The shard index ``<dir>/index.parquet``: key -> (shard, position, global index).

The global index numbers samples in shard order then tar order; the pre-training queue stores it,
so it must not change once training has started on a corpus.
"""

from __future__ import annotations

import io
import re
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
