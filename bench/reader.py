"""Reader throughput: samples/s of the streaming reader vs what a UNIK training step consumes.

Builds a triplet corpus in a temporary folder from the real skeletons of ../shared/data (COCO-17
pixel keypoints as the pose stage writes them, 768-d float16 video / text embeddings as ViCLIP
gives), replicated under distinct keys to ``--samples`` samples in shards of ``--shard-size``.
Then, in the same run:

- reader:   ``make_loader`` with ``--workers`` DataLoader workers, batch 64, T=64, M=2, shuffle
            buffer 1000, augmentation on; samples/s over ``--batches`` batches after one warm-up
            batch (median of ``--runs`` epochs).
- baseline: one UNIK training step (forward, InfoNCE-style loss on the embedding, backward, SGD)
            on a batch of 64 (N, 2, 64, 17, 2) on this machine's CPU (median of ``--steps``).

Prints both throughputs and their ratio (goal >= 5x), and the ratio against the ~2,200
samples/s of a training step measured on an H100 (docs: DESIGN.md) for reference.

    OMP_NUM_THREADS=1 .venv/bin/python bench/reader.py [--samples 2048] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/_windows.py: real skeleton windows

from _windows import as_coco_pixels  # noqa: E402

from tmor.shards.codec import Triplet  # noqa: E402
from tmor.shards.index import write_index  # noqa: E402
from tmor.shards.reader import ReaderConfig, make_loader  # noqa: E402
from tmor.shards.writer import write_triplet_shards  # noqa: E402

SKELETONS = ROOT.parent / "shared" / "data" / "skeletons"
H100_STEP_SAMPLES_PER_S = 2200.0


def real_sequences() -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(keypoint (M,T,17,2) pixels, score (M,T,17), label) of every real skeleton file."""
    paths = sorted(p for p in SKELETONS.glob("*/*") if p.suffix in (".csv", ".npy"))
    return [as_coco_pixels(str(p)) for p in paths]


def build_corpus(root: str, samples: int, shard_size: int) -> None:
    seqs = real_sequences()
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

    write_triplet_shards(f"{root}/triplets", gen(), shard_size)
    write_index(f"{root}/triplets")


def time_reader(root: str, workers: int, batches: int, runs: int) -> list[float]:
    cfg = ReaderConfig(frames=64, layout="coco17", max_persons=2, channels=2, batch_size=64,
                       num_workers=workers, shuffle_buffer=1000, augment=True,
                       epoch_samples=64 * (batches + 1) * max(workers, 1))
    loader = make_loader(f"{root}/triplets", cfg)
    rates = []
    for epoch in range(runs):
        loader.set_epoch(epoch)
        it = iter(loader)
        next(it)  # warm-up: worker start and the first shuffle buffer
        t0 = time.perf_counter()
        n = 0
        for _ in range(batches):
            b = next(it)
            n += b["pose"].shape[0]
        rates.append(n / (time.perf_counter() - t0))
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
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    if not SKELETONS.exists():
        sys.exit(f"real skeletons not found at {SKELETONS}")
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_corpus(tmp, args.samples, args.shard_size)
        print(f"corpus: {args.samples} samples in shards of {args.shard_size}, "
              f"built in {time.perf_counter() - t0:.1f} s")
        reader = time_reader(tmp, args.workers, args.batches, args.runs)
    step = time_unik_step(args.steps)
    r, s = statistics.median(reader), statistics.median(step)
    print(f"reader ({args.workers} workers, batch 64, T=64, augment): "
          f"{r:,.0f} samples/s  runs {[round(x) for x in reader]}")
    print(f"UNIK train step (CPU, batch 64, 2x64x17x2):  {s:,.1f} samples/s "
          f"({64 / s:.2f} s/step)  steps {[round(x, 1) for x in step]}")
    print(f"ratio reader / CPU step: {r / s:,.1f}x (goal >= 5x)")
    print(f"ratio reader / H100 step (~{H100_STEP_SAMPLES_PER_S:,.0f} samples/s, DESIGN.md): "
          f"{r / H100_STEP_SAMPLES_PER_S:.2f}x")


if __name__ == "__main__":
    main()
