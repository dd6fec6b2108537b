"""Many workers on one corpus: `--worker-index` workers started at once on an unplanned root plan
once (under the plan lock), write one card, and build the same corpus as one worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tmor.manifests import ledger as L
from tmor.shards.tario import read_tar_samples

REPO = Path(__file__).resolve().parents[1]
CLIPS = ("kinetics_tai_chi_1.mp4", "ntu_two_person_hug.mp4", "ucf101_archery.avi",
         "kinetics_arm_wrestling.mp4")


def _clip_list(tmp_path: Path, videos: Path) -> Path:
    rows = ["path,start,end,label"] + [f"{videos / c},0.5,1.5,{c.split('.')[0]}" for c in CLIPS]
    path = tmp_path / "clips.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _fetch(clips: Path, root: Path, videos: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "tmor.cli.data", "fetch", str(clips), "--root", str(root),
            "--allow-local", str(videos), "--shard-size", "1", "--no-progress", *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _corpus(root: Path) -> dict[str, tuple[str, bytes | None]]:
    """key -> (status, mp4 bytes) over every committed fetch shard."""
    out = {}
    for shard in L.committed_shards(str(root), "fetch"):
        members = read_tar_samples(L.tar_url(str(root), "fetch", shard))
        for row in L.read_ledger(str(root), "fetch", shard).to_dict("records"):
            out[row["key"]] = (row["status"], members.get(row["key"], {}).get("mp4"))
    return out


def test_two_worker_index_workers_on_an_unplanned_root_match_one_worker(tmp_path, videos_dir):
    clips = _clip_list(tmp_path, videos_dir)
    single, shared = tmp_path / "single", tmp_path / "shared"
    one = _fetch(clips, single, videos_dir)
    out, err = one.communicate(timeout=600)
    assert one.returncode == 0, err
    workers = [_fetch(clips, shared, videos_dir, "--worker-index", str(i), "--worker-count", "2")
               for i in range(2)]  # both plan, both fetch, at once
    results = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, results, strict=True):
        assert w.returncode == 0, err

    # one plan: four shards of one clip, one manifest that lists the list once
    manifest = json.loads((shared / "plan" / "_plan.json").read_text())
    assert sorted(manifest["shards"]) == ["000000", "000001", "000002", "000003"]
    assert len(manifest["inputs"]) == 1
    assert sorted(p.name for p in (shared / "plan").glob("*.parquet")) == sorted(
        p.name for p in (single / "plan").glob("*.parquet"))
    planned = " ".join(out for out, _ in results)
    assert planned.count("new keys in 4 new shard(s)") == 1  # the other found it planned

    # the same corpus as one worker, done by both workers
    got, want = _corpus(shared), _corpus(single)
    assert set(got) == set(want) and len(got) == 4
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}
    assert got == want  # byte for byte
    workers_seen = set(L.read_stage_ledgers(str(shared), "fetch")["worker"])
    assert all(w.endswith("/2") for w in workers_seen)

    # one card, written by whoever finished last: complete counts, no leftover lock
    cards = list(shared.glob("corpus*.json"))
    assert [c.name for c in cards] == ["corpus.json"]
    card = json.loads(cards[0].read_text())
    assert card["fetch"]["summary"]["shards_committed"] == 4
    assert card["fetch"]["summary"]["ok"] == 4
    assert not list(shared.glob(".corpus.json.lock")) and not (shared / "plan" / ".lock").exists()
