"""Does pre-training pay? Penn Action's official split, one command, on a CPU.

1. imports Penn Action (``tmor-data import --format penn_action``): the training split alone
   (the pre-training corpus) and the whole set (the probe's data);
2. pre-trains UNIK, stage 1 motion only (``--losses M``), on the training split without its
   labels, in the ``coco17`` layout, twice with the same seed, data and steps: with cluster
   guidance (the default) and without (``--no-guidance``: plain instance discrimination). The
   two runs go side by side, one core each;
3. linear-probes the two checkpoints and a random backbone with identical settings (train ->
   test, the epoch picked on a validation split carved from train);
4. prints the table and writes JSON: ``random_top1``, ``instance_top1``, ``guided_top1``,
   ``frames``, ``epochs``, ``steps``, ``minutes``, ``checkpoint``, ``guidance`` (the guided
   run's per-epoch clustering and action, with ``guide_purity``: the share of clustered samples
   whose cluster's majority action is their own, read only after training), ``settings`` and
   ``reduced`` (what differs from the paper's setting).

    python bench/pretrain_pays.py --penn ../shared/data/benchmarks/penn_action/labels \\
        --out /tmp/pays --json pays.json
    # the same at the paper's Penn Action input size, on a GPU machine
    python bench/pretrain_pays.py --config configs/pretrain/pays_gpu.yaml --out runs/pays \\
        --json pays_gpu.json

Everything runs through the real CLIs (``python -m tmor.cli.data`` / ``tmor.cli.train``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PAPER = {"random_top1": 0.298, "vm_top1": 0.863, "vmt_top1": 0.978}  # Table I, linear probe
OWN = ("train_labels", "corpus_train", "corpus_all", "guided", "instance", "probe_random",
       "probe_instance", "probe_guided")


def cli(module: str, *args: str, threads: int = 2, log: Path | None = None
        ) -> subprocess.Popen:
    """Start ``python -m tmor.cli.<module> ARGS`` (argv, no shell) with ``threads`` torch
    threads; its output goes to ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = open(log, "w") if log else None  # noqa: SIM115 (closed by wait())
    return subprocess.Popen([sys.executable, "-m", f"tmor.cli.{module}", *args], env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def wait(*procs: subprocess.Popen) -> None:
    for p in procs:
        rc = p.wait()
        if p.stdout:
            p.stdout.close()
        if rc != 0:
            log = getattr(p.stdout, "name", "")
            raise SystemExit(f"{' '.join(map(str, p.args))} exited {rc}; see {log}")


def training_split(labels: Path, into: Path) -> int:
    """Links the official training files of ``labels`` into ``into``; returns their count."""
    from tmor.shards.benchmarks.penn_action import read_penn_mat

    into.mkdir(parents=True)
    n = 0
    for mat in sorted(labels.glob("*.mat")):
        if read_penn_mat(str(mat))["train"]:
            (into / mat.name).symlink_to(mat.resolve())
            n += 1
    return n


def guide_purity(run: Path, corpus: Path) -> dict[int, float | None]:
    """Per epoch: the share of clustered samples whose guide cluster's majority action is their
    own (read after training, as a diagnostic: pre-training never sees the labels)."""
    import tmor

    action = {t["key"]: t["meta"]["label"] for t in tmor.read_triplets(str(corpus))}
    out: dict[int, float | None] = {}
    for f in sorted(run.glob("labels_epoch*.parquet")):
        lab = pd.read_parquet(f)
        lab = lab[lab["guide"] >= 0].assign(action=lambda d: d["key"].map(action))
        majority = lab.groupby("guide")["action"].agg(lambda a: a.value_counts().iloc[0]).sum()
        out[int(f.stem[len("labels_epoch"):])] = (round(float(majority / len(lab)), 3)
                                                  if len(lab) else None)
    return out


def parser() -> argparse.ArgumentParser:
    """The options (also the keys of a ``--config`` YAML)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, help="YAML of these options (dashes as underscores); "
                    "options given on the command line win")
    ap.add_argument("--penn", type=Path, default=DATA / "benchmarks" / "penn_action" / "labels",
                    help="Penn Action labels/ folder (the 2,326 .mat files)")
    ap.add_argument("--out", type=Path, required=True, help="work folder (its own subfolders "
                    "from an earlier run are replaced)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--frames", type=int, default=32, help="T (the paper's Penn setting: 150)")
    ap.add_argument("--max-persons", type=int, default=1, help="M (Penn has one actor)")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--queue-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:K (both runs share it)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any other pre-training field, for both runs (e.g. min_crop=0.7)")
    return ap


def main() -> None:
    ap = parser()
    first, _ = ap.parse_known_args()
    if first.config:
        import yaml

        values = yaml.safe_load(first.config.read_text()) or {}
        unknown = set(values) - {a.dest for a in ap._actions}
        if unknown:
            ap.error(f"{first.config}: unknown keys {sorted(unknown)}")
        ap.set_defaults(**values)
    args = ap.parse_args()
    threads = 1 if args.device == "cpu" else 2  # the two runs side by side: one core each
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in OWN:
        shutil.rmtree(out / name, ignore_errors=True)
    t0 = time.perf_counter()

    n_train = training_split(args.penn, out / "train_labels")
    imp = [cli("data", "import", "--format", "penn_action", str(src), "--root", str(root),
               log=out / f"import_{root.name}.log")
           for src, root in ((out / "train_labels", out / "corpus_train"),
                             (args.penn, out / "corpus_all"))]
    wait(*imp)
    t_import = time.perf_counter() - t0

    common = ["--shards", str(out / "corpus_train" / "triplets"), "--stage", "1",
              "--losses", "M", "--layout", "coco17", "--channels", "2",
              "--frames", str(args.frames), "--max-persons", str(args.max_persons),
              "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--queue-size", str(args.queue_size), "--lr", str(args.lr),
              "--seed", str(args.seed), "--loader-workers", "0", "--ckpt-every", "0",
              "--report-to", "csv", "--device", args.device]
    for item in args.set:
        common += ["--set", item]
    runs = {"guided": ["--guidance"], "instance": ["--no-guidance"]}
    procs = [cli("train", "pretrain", *common, "--out", str(out / name), *extra, threads=threads,
                 log=out / f"{name}.log") for name, extra in runs.items()]
    wait(*procs)
    t_pretrain = time.perf_counter() - t0 - t_import

    probe = ["--data", str(out / "corpus_all"), "--split-train", "train", "--split-test",
             "test", "--layout", "coco17", "--channels", "2", "--frames", str(args.frames),
             "--max-persons", str(args.max_persons), "--seed", str(args.seed),
             "--device", args.device]
    inits = {"random": [], "instance": ["--init", str(out / "instance" / "last.pt")],
             "guided": ["--init", str(out / "guided" / "last.pt")]}
    for name, init in inits.items():  # one at a time: each uses both cores
        wait(cli("train", "linear-probe", *probe, *init, "--out", str(out / f"probe_{name}"),
                 log=out / f"probe_{name}.log"))
    minutes = (time.perf_counter() - t0) / 60

    top1 = {name: json.loads((out / f"probe_{name}" / "results.json").read_text())["best"]
            ["top1"] for name in inits}
    clusters = pd.read_csv(out / "guided" / "clusters.csv")
    metrics = pd.read_csv(out / "guided" / "metrics.csv")
    guidance = clusters[["epoch", "clusters", "largest_fraction", "action", "guide_eps",
                         "guide_quantile", "guide_clusters", "guide_largest_fraction",
                         "guide_noise_fraction"]].astype(object)
    guidance = guidance.where(guidance.notna(), None).to_dict("records")  # no NaN in the JSON
    purity = guide_purity(out / "guided", out / "corpus_train" / "triplets")
    for row in guidance:
        row["guide_purity"] = purity.get(int(row["epoch"]))
    result = {
        "random_top1": top1["random"], "instance_top1": top1["instance"],
        "guided_top1": top1["guided"], "frames": args.frames, "epochs": args.epochs,
        "steps": int(metrics["step"].max()), "minutes": round(minutes, 2),
        "minutes_import": round(t_import / 60, 2), "minutes_pretrain": round(t_pretrain / 60, 2),
        "checkpoint": str(out / "guided" / "last.pt"),
        "guidance": guidance,
        "guided_steps": int(metrics["guided"].sum()),
        "settings": {"max_persons": args.max_persons, "batch_size": args.batch_size,
                     "queue_size": args.queue_size, "lr": args.lr, "seed": args.seed,
                     "layout": "coco17", "channels": 2, "losses": "M", "base_channels": 64,
                     "pretrain_samples": n_train, "set": args.set, "device": args.device},
        "reduced": (f"pre-trained on Penn Action's {n_train} training sequences (not "
                    f"PoseCap-1M's 1M clips), motion-only (M, not V+M), {args.epochs} epochs "
                    f"of batch {args.batch_size}, queue {args.queue_size}, T {args.frames} "
                    f"and M {args.max_persons} (the paper's Penn setting: T 150, M 2); UNIK "
                    "at full width"),
        "paper": PAPER,
    }
    print(f"\n{'backbone (linear probe)':<28}{'Penn Action top-1':>18}   paper")
    for name, paper in (("random", "29.8 (random UNIK)"), ("instance", ""),
                        ("guided", "86.3 (PoseCap-1M, V+M)")):
        print(f"{name:<28}{100 * top1[name]:>17.1f}%   {paper}")
    print(f"{n_train} pre-training sequences, {result['steps']} steps x 2 runs, "
          f"{minutes:.1f} min in all")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
