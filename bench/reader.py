"""Reader throughput: samples/s of the streaming reader per worker and with one worker per core.

Builds a triplet corpus in a temporary folder from the real skeletons of the shared data folder
(``$TMOR_DATA``, else ../shared/data beside the checkout; COCO-17
pixel keypoints as the pose stage writes them, 768-d float16 video / text embeddings as ViCLIP
gives), replicated under distinct keys to ``--samples`` samples in shards of ``--shard-size``.
Then, in the same run:

- per worker: ``make_loader`` with one DataLoader worker, batch 64, T=64, M=2, shuffle buffer
  1000, augmentation on; samples/s over ``--batches`` batches after one warm-up batch, one epoch
  per run (median of ``--runs``);
- all cores: the same with one worker per core (``os.cpu_count()``, or ``--all-workers``);
- optionally (``--steps N``): one UNIK training step on a batch of 64 on this CPU, for the ratio.

``--repo DIR`` imports tmor from another checkout (e.g. ``git worktree add /tmp/before HEAD~3``),
so the same script measures before and after; ``--compressed`` writes deflated ``pose.npz`` (the
format of shards packed before the reader change). The one-minute load average is printed with
each figure: on a shared CPU compare medians taken side by side; the third figure, samples per
CPU second of the reader's work done in this process (``time.process_time``), is what one worker
does with a core to itself, whatever else runs. ``--json PATH`` writes
``samples_per_s_per_worker``, ``samples_per_s_all_cores`` and ``samples_per_cpu_s_per_worker``
(and the runs, load and settings).
Goal: >= 2,000 samples/s per worker, so that 6 workers per GPU feed 5x an H100's training step
(~2,200 samples/s, DESIGN.md).

    OMP_NUM_THREADS=1 .venv/bin/python bench/reader.py [--samples 2048] [--runs 5] [--json x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SKELETONS = Path(os.environ.get("TMOR_DATA") or ROOT.parent / "shared" / "data") / "skeletons"
H100_STEP_SAMPLES_PER_S = 2200.0


def _setup_imports(repo: Path) -> None:
    """tmor from ``repo``; tests/_windows.py (the real-skeleton pixel mapping) from this one."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(repo))


def real_sequences(skeletons: Path) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(keypoint (M,T,17,2) pixels, score (M,T,17), label) of every real skeleton file."""
    from _windows import as_coco_pixels

    paths = sorted(p for p in skeletons.glob("*/*") if p.suffix in (".csv", ".npy"))
    return [as_coco_pixels(str(p)) for p in paths]


def build_corpus(root: str, samples: int, shard_size: int, skeletons: Path = SKELETONS,
                 compressed: bool = False) -> None:
    from tmor.shards import codec
    from tmor.shards.codec import Triplet
    from tmor.shards.index import write_index
    from tmor.shards.writer import write_triplet_shards

    seqs = real_sequences(skeletons)
    if not seqs:
        raise SystemExit(f"bench/reader.py: error: no skeleton files (*/*.csv, *.npy) under "
                         f"{skeletons}")
    rng = np.random.default_rng(0)

    def gen():
        for i in range(samples):
            kp, sc, label = seqs[i % len(seqs)]
            if kp.shape[0] < 2:  # a second, shifted person as in two-person clips
                kp = np.concatenate([kp, kp + 50], 0)
                sc = np.concatenate([sc, sc], 0)
            video, text = rng.standard_normal((2, 768)).astype(np.float16)
            yield Triplet(
                key=f"{i:016x}", keypoint=kp, keypoint_score=sc, layout="coco17", fps=30.0,
                video=video, text=text, caption=f"a person {label}.",
                meta={"label": label, "source": f"bench/{i}"},
            )

    if compressed:  # the deflated pose.npz of older shards
        enc = codec.encode_pose
        codec.encode_pose = lambda *a, **k: enc(*a, **{**k, "compress": True})
    try:
        write_triplet_shards(f"{root}/triplets", gen(), shard_size)
    finally:
        if compressed:
            codec.encode_pose = enc
    write_index(f"{root}/triplets")


def time_reader(root: str, workers: int, batches: int, runs: int,
                cpu: bool = False) -> list[float]:
    """samples/s of ``runs`` epochs of ``batches`` batches after a warm-up batch each; with
    ``cpu`` (and ``workers`` 0: this process does a worker's whole job) samples per CPU second
    of this process, a figure that other jobs on a shared CPU do not lower."""
    from tmor.shards.reader import ReaderConfig, make_loader

    cfg = ReaderConfig(frames=64, layout="coco17", max_persons=2, channels=2, batch_size=64,
                       num_workers=workers, shuffle_buffer=1000, augment=True,
                       epoch_samples=64 * (batches + 1) * max(workers, 1))
    loader = make_loader(f"{root}/triplets", cfg)
    rates = []
    for epoch in range(runs):
        loader.set_epoch(epoch)
        it = iter(loader)
        next(it)  # warm-up: worker start and the first shuffle buffer
        clock = time.process_time if cpu else time.perf_counter
        t0 = clock()
        n = 0
        for _ in range(batches):
            n += next(it)["pose"].shape[0]
        rates.append(n / (clock() - t0))
        del it
    return rates


def time_unik_step(steps: int) -> list[float]:
    import torch

    from tmor.model.unik import UNIK

    torch.manual_seed(0)
    model = UNIK(in_channels=2, num_joints=17, num_persons=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(64, 2, 64, 17, 2)
    rates = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        z = torch.nn.functional.normalize(model(x), dim=-1)
        logits = z @ z.roll(1, 0).T / 0.07
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(64))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step pays one-time allocation costs
            rates.append(64 / (time.perf_counter() - t0))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--all-workers", type=int, default=os.cpu_count() or 1,
                    help="workers of the all-cores figure (default: one per core)")
    ap.add_argument("--steps", type=int, default=0, help="UNIK CPU steps for the ratio (0: off)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the tmor checkout to measure")
    ap.add_argument("--data", type=Path, default=SKELETONS, help="the shared skeletons folder")
    ap.add_argument("--compressed", action="store_true", help="deflated pose.npz (old shards)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"bench/reader.py: error: real skeletons not found at {args.data} (set "
                 "TMOR_DATA or --data)")
    _setup_imports(args.repo.resolve())
    import torch

    print(f"tmor from {args.repo.resolve()}; torch threads: {torch.get_num_threads()}; "
          f"cores: {os.cpu_count()}")
    figures: dict[str, list[float]] = {}
    loads: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_corpus(tmp, args.samples, args.shard_size, args.data, args.compressed)
        print(f"corpus: {args.samples} samples in shards of {args.shard_size}"
              f"{' (deflated pose.npz)' if args.compressed else ''}, "
              f"built in {time.perf_counter() - t0:.1f} s")
        for name, workers in (("per_worker", 1), ("all_cores", args.all_workers),
                              ("per_worker_cpu", 0)):
            loads[name] = os.getloadavg()[0]
            figures[name] = time_reader(tmp, workers, args.batches, args.runs,
                                        cpu=name == "per_worker_cpu")
            med = statistics.median(figures[name])
            what = (f"{workers} worker(s)" if workers else "in process, per CPU second")
            print(f"reader, {what}, batch 64, T=64, augment: {med:,.0f} samples/s "
                  f"(median; runs {[round(x) for x in figures[name]]}; "
                  f"load before {loads[name]:.2f})")
    per_worker = statistics.median(figures["per_worker"])
    all_cores = statistics.median(figures["all_cores"])
    print(f"per worker: {per_worker:,.0f} samples/s (goal >= 2,000); "
          f"6 workers ~ {6 * per_worker / H100_STEP_SAMPLES_PER_S:.1f}x an H100 step "
          f"(~{H100_STEP_SAMPLES_PER_S:,.0f} samples/s, DESIGN.md)")
    per_cpu = statistics.median(figures["per_worker_cpu"])
    print(f"per CPU second of one worker's job: {per_cpu:,.0f} samples (what a worker does "
          "with a core to itself)")
    out = {"samples_per_s_per_worker": per_worker, "samples_per_s_all_cores": all_cores,
           "samples_per_cpu_s_per_worker": per_cpu,
           "all_cores_workers": args.all_workers, "runs": figures, "load_avg_1min": loads,
           "cores": os.cpu_count(), "samples": args.samples, "shard_size": args.shard_size,
           "compressed": args.compressed, "repo": str(args.repo.resolve())}
    if args.steps:
        step = statistics.median(time_unik_step(args.steps))
        print(f"UNIK train step (CPU, batch 64, 2x64x17x2): {step:,.1f} samples/s; "
              f"reader / step: {per_worker / step:,.1f}x")
        out["unik_step_samples_per_s"] = step
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
