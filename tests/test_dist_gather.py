"""Re-clustering's exchanges under 2-process gloo: embeddings gathered to rank 0 only (uneven
row counts, several chunks), keys gathered as objects, the labels sent back while the other rank
waits for rank 0's (slow) clustering."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch.multiprocessing as mp


def _worker(rank: int, world: int, folder: str) -> None:
    import torch.distributed as dist

    from tmor.train.dist import DistContext, from_main, gather_objects_to_main, gather_to_main

    dist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank,
                            world_size=world)
    ctx = DistContext(rank, world)
    rows = 5 + 4 * rank  # uneven parts: 5 and 9 rows
    index = np.arange(rows, dtype=np.int64) * 10 + rank
    emb = np.full((rows, 3), rank, np.float32) + np.arange(rows, dtype=np.float32)[:, None]
    got = gather_to_main({"index": index, "emb": emb}, ctx, chunk_bytes=24)  # 2 rows a chunk
    keys = gather_objects_to_main([f"k{rank}_{i}" for i in range(rows)], ctx)
    table = None
    if rank == 0:
        time.sleep(2.0)  # the clustering: rank 1 waits in from_main meanwhile
        table = np.arange(7, dtype=np.int64) * 3
    t0 = time.perf_counter()
    back = from_main(table, ctx)
    waited = time.perf_counter() - t0
    out = {"rank": rank, "back": back.tolist(), "waited": waited,
           "got": None if got is None else {k: v.tolist() for k, v in got.items()},
           "keys": keys}
    Path(folder, f"r{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()


def test_gather_to_rank0_only_and_labels_back(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "r0.json").read_text())
    r1 = json.loads((tmp_path / "r1.json").read_text())
    assert r1["got"] is None and r1["keys"] is None  # rank 1 received nothing
    assert r0["got"]["index"] == [i * 10 for i in range(5)] + [i * 10 + 1 for i in range(9)]
    emb = np.array(r0["got"]["emb"])
    assert emb.shape == (14, 3)
    assert np.array_equal(emb[:5, 0], np.arange(5)) and np.array_equal(emb[5:, 0],
                                                                       1 + np.arange(9))
    assert r0["keys"] == [[f"k0_{i}" for i in range(5)], [f"k1_{i}" for i in range(9)]]
    assert r0["back"] == r1["back"] == [0, 3, 6, 9, 12, 15, 18]
    assert r1["waited"] > 1.0  # it waited for rank 0 inside from_main
