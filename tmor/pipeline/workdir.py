"""Progress inside an uncommitted shard: ``<root>/<stage>/_work/NNNNNN/``.

Each finished key leaves its members (``<key>.<ext>``) and then its record (``<key>.record.json``,
written last and atomically). After a crash, a rerun keeps the keys whose record exists and redoes
only the rest; committing the shard removes the folder.
"""

from __future__ import annotations

import json
from typing import Any

from tmor import fsio
from tmor.manifests.plan import shard_name

RECORD_SUFFIX = ".record.json"


class WorkDir:
    def __init__(self, root: str, stage: str, shard: int):
        self.url = fsio.join(root, stage, "_work", shard_name(shard))

    def done_records(self) -> dict[str, dict[str, Any]]:
        """key -> record of every key finished so far."""
        out = {}
        for name in fsio.listdir(self.url):
            if name.endswith(RECORD_SUFFIX) and not name.startswith(".tmp-"):
                out[name[: -len(RECORD_SUFFIX)]] = json.loads(
                    fsio.read_bytes(fsio.join(self.url, name))
                )
        return out

    def save(self, key: str, members: dict[str, bytes], record: dict[str, Any]) -> None:
        for ext, data in members.items():
            fsio.write_bytes(fsio.join(self.url, f"{key}.{ext}"), data)
        record = {**record, "members": sorted(members)}
        fsio.write_bytes(
            fsio.join(self.url, key + RECORD_SUFFIX), json.dumps(record, default=str).encode()
        )

    def members(self, key: str, record: dict[str, Any]) -> dict[str, bytes]:
        return {
            ext: fsio.read_bytes(fsio.join(self.url, f"{key}.{ext}")) for ext in record["members"]
        }

    def clear(self) -> None:
        fsio.remove(self.url, recursive=True)
