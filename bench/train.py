"""Pre-training step throughput (samples/s), side by side in one run:

- baseline: a plain supervised UNIK step (one view, linear classifier, cross-entropy), the
  reference recipe's training step;
- tmor: the stage-1 T-MOR step (two augmented views, mm + mv heads, queue, cluster-guided loss);
- inference: the corpus embedding pass (no grad), for the per-epoch re-clustering;
- ``--resume-check``: a tiny 2-epoch pre-training run on the device (reader, steps, DBSCAN at the
  epoch's end, checkpoint), stopped after epoch 1 and resumed from its checkpoint.

Real skeleton windows (shared NTU + FallFree samples, 3D, 25 joints; from ``$TMOR_DATA``, else
../shared/data beside the checkout) at the reference width. Medians of --repeats timed runs of
--steps steps after a warm-up step; ``--json PATH`` writes the figures.

    OMP_NUM_THREADS=1 python bench/train.py --batch 8 --frames 32 --steps 3
    python bench/train.py --device cuda --batch 64 --frames 64 --amp bf16   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/_windows.py


def real_batch(n: int, frames: int, dim: int) -> dict:
    from _windows import skeleton_windows

    from tmor.skeleton.transforms import to_ctvm

    wins = skeleton_windows(str(DATA), frames=frames, stride=max(frames // 4, 1))[:n]
    if not wins:
        raise SystemExit(f"bench/train.py: error: no {frames}-frame windows in the skeletons of "
                         f"{DATA} (set TMOR_DATA)")
    wins = [wins[i % len(wins)] for i in range(n)]
    pose = np.stack([to_ctvm(w.keypoint_3d, w.score, "ntu25", frames=frames, max_persons=2,
                             channels=3, keypoint_3d=w.keypoint_3d) for w in wins])
    g = torch.Generator().manual_seed(0)
    return {"pose": torch.from_numpy(pose),
            "video": torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1),
            "has_video": torch.ones(n, dtype=torch.bool),
            "text": torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1),
            "has_text": torch.ones(n, dtype=torch.bool),
            "index": torch.arange(n), "key": [str(i) for i in range(n)], "label": [None] * n}


def resume_check(device: str) -> dict:
    """A 2-epoch run of 4 steps each on windows of the real skeletons, stopped after epoch 1 and
    resumed from ``last.pt``: whether it resumed, and the seconds of each part."""
    import tempfile

    from _windows import skeleton_windows, write_window_corpus

    from tmor.train.config import PretrainConfig
    from tmor.train.pretrain import run_pretrain

    with tempfile.TemporaryDirectory() as tmp:
        shards = write_window_corpus(tmp, skeleton_windows(str(DATA), frames=16, stride=8))

        def run(epochs: int) -> tuple[dict, float]:
            cfg = PretrainConfig(shards=shards, out_dir=f"{tmp}/run", frames=16, layout=None,
                                 channels=3, max_persons=1, batch_size=16, num_workers=0,
                                 shuffle_buffer=32, epoch_samples=64, base_channels=8,
                                 proj_dim=32, hidden_dim=64, epochs=epochs, queue_size=32,
                                 eps=0.005, min_samples=4, warmup_steps=1, device=device,
                                 log_every=2)
            t0 = time.perf_counter()
            return run_pretrain(cfg), time.perf_counter() - t0

        first, t1 = run(1)
        second, t2 = run(2)
    return {"resumed": bool(second["resumed"]), "steps": [first["steps"], second["steps"]],
            "loss": second["loss"], "seconds": [round(t1, 1), round(t2, 1)]}


def timed(fn, steps: int, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(time.perf_counter() - t0)
    return statistics.median(rates) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    ap.add_argument("--amp", default="none", help="bf16 | fp16 | none (CUDA)")
    ap.add_argument("--base-channels", type=int, default=64)
    ap.add_argument("--json", default=None, help="write the figures to this file")
    ap.add_argument("--resume-check", action="store_true",
                    help="also a tiny 2-epoch run stopped after epoch 1 and resumed")
    args = ap.parse_args()

    from tmor.devices import resolve_device
    from tmor.model.unik import UNIK
    from tmor.train.config import PretrainConfig
    from tmor.train.dist import DistContext
    from tmor.train.pretrain import Trainer

    dev = torch.device(resolve_device(args.device))
    batch = real_batch(args.batch, args.frames, 512)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    amp_on = amp_dtype is not None and dev.type == "cuda"

    # baseline: supervised UNIK step
    torch.manual_seed(0)
    enc = UNIK(3, 25, 2, base_channels=args.base_channels).to(dev)
    fc = torch.nn.Linear(enc.embed_dim, 60).to(dev)
    opt = torch.optim.SGD([*enc.parameters(), *fc.parameters()], lr=0.01, momentum=0.9,
                          nesterov=True)
    x = batch["pose"].to(dev)
    y = torch.arange(args.batch, device=dev) % 60

    def sup_step() -> None:
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_on):
            loss = torch.nn.functional.cross_entropy(fc(enc(x)).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    # tmor stage-1 step
    cfg = PretrainConfig(base_channels=args.base_channels, queue_size=4096, amp=args.amp,
                         warmup_steps=1, device=str(dev))
    tr = Trainer(cfg, DistContext(device=dev), 3, 25, 2, 512, 512, total_steps=1000)

    def tmor_step() -> None:
        tr.train_step(batch)

    @torch.no_grad()
    def infer() -> None:
        tr.encoder.eval()
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_on):
            tr.encoder(x)
        tr.encoder.train()

    t_sup = timed(sup_step, args.steps, args.repeats, dev)
    t_tmor = timed(tmor_step, args.steps, args.repeats, dev)
    t_inf = timed(infer, args.steps, args.repeats, dev)
    n = args.batch
    print(f"device={dev} amp={args.amp if amp_on else 'none'} batch={n} T={args.frames} V=25 "
          f"M=2 C=3 width={args.base_channels} threads={torch.get_num_threads()}")
    print(f"baseline supervised UNIK step: {n / t_sup:8.1f} samples/s")
    print(f"tmor stage-1 step (2 views):    {n / t_tmor:8.1f} samples/s "
          f"(x{t_sup / t_tmor:.2f} of baseline)")
    print(f"inference (embedding pass):     {n / t_inf:8.1f} samples/s "
          f"(x{t_sup / t_inf:.2f} of baseline)")
    resume = None
    if args.resume_check:
        resume = resume_check(str(dev))
        print(f"resume check: {resume}")
        if not (resume["resumed"] and resume["steps"] == [4, 8]):
            raise SystemExit(f"bench/train.py: error: the resume check failed: {resume}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "bench": "train", "device": str(dev), "amp": args.amp if amp_on else "none",
            "batch": n, "frames": args.frames, "base_channels": args.base_channels,
            "steps": args.steps, "repeats": args.repeats, "threads": torch.get_num_threads(),
            "supervised_samples_per_s": round(n / t_sup, 1),
            "tmor_step_samples_per_s": round(n / t_tmor, 1),
            "inference_samples_per_s": round(n / t_inf, 1),
            "tmor_over_supervised": round(t_sup / t_tmor, 3), "resume": resume}, indent=1))


if __name__ == "__main__":
    main()
