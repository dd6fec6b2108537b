"""Planning a large input list: wall time and peak memory of `tmor-data plan`, then of re-planning
the same list (every key already planned), then of `tmor-data status` on the planned corpus.

Writes a Kinetics-style CSV (label, youtube_id, time_start, time_end) of ``--rows`` rows (one clip
per video id, as Kinetics has) into a temporary folder, and runs the real command line in a child
process for each step; peak memory is the child's maximum resident set size (``os.wait4``).

    .venv/bin/python bench/plan.py [--rows 1000000] [--shard-size 1000] [--json PATH]

Goal (issue 15): plan < 20 s and < 1 GB, re-plan < 10 s, for 1M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def write_kinetics_csv(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` distinct clips: 11-character ids, 10 s ranges, 400 labels."""
    rng = np.random.default_rng(seed)
    chars = ALPHABET[rng.integers(0, len(ALPHABET), size=(rows, 11))]
    ids = np.ascontiguousarray(chars).view("<U11").ravel()
    starts = rng.integers(0, 600, size=rows)
    labels = np.array([f"action {i:03d}" for i in range(400)])[rng.integers(0, 400, size=rows)]
    with open(path, "w") as f:
        f.write("label,youtube_id,time_start,time_end,split\n")
        for lab, vid, s in zip(labels, ids, starts, strict=True):
            f.write(f"{lab},{vid},{s},{s + 10},train\n")


def timed(argv: list[str]) -> dict[str, float]:
    """Wall seconds, CPU seconds (user + system: what a busy machine inflates least) and peak
    RSS (MB) of one child process; raises when it fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"seconds": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--no-status", action="store_true", help="skip timing `status`")
    ap.add_argument("--json", metavar="PATH", help="also write the figures here as JSON")
    args = ap.parse_args()

    cli = [sys.executable, "-m", "tmor.cli.data"]
    with tempfile.TemporaryDirectory(prefix="tmor-bench-plan-") as tmp:
        csv = Path(tmp) / "kinetics.csv"
        t0 = time.monotonic()
        write_kinetics_csv(csv, args.rows)
        gen_s = time.monotonic() - t0
        root = str(Path(tmp) / "corpus")
        step = [*cli, "plan", str(csv), "--root", root, "--shard-size", str(args.shard_size)]
        out: dict[str, object] = {
            "rows": args.rows, "shard_size": args.shard_size,
            "csv_mb": round(csv.stat().st_size / 2**20, 1), "csv_write_s": round(gen_s, 2),
        }
        out["plan"] = timed(step)
        out["shards"] = len(list((Path(root) / "plan").glob("*.parquet")))
        out["replan"] = timed(step)
        if not args.no_status:
            out["status"] = timed([*cli, "status", "--root", root])
    out["load_avg_1m"] = round(os.getloadavg()[0], 1)
    out["cpus"] = os.cpu_count()
    goal = {"plan_s": 20, "plan_rss_mb": 1024, "replan_s": 10}
    out["goal"] = goal
    out["meets_goal"] = (out["plan"]["seconds"] < goal["plan_s"]  # type: ignore[index]
                         and out["plan"]["peak_rss_mb"] < goal["plan_rss_mb"]  # type: ignore[index]
                         and out["replan"]["seconds"] < goal["replan_s"])  # type: ignore[index]
    for k, v in out.items():
        print(f"{k:12} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
