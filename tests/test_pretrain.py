"""Pre-training on windows of the real shared skeletons, streamed through the shard reader:
the loss falls, clusters form, checkpoints reload; 2-process gloo DDP equals one process on the
same global batch; kill -9 mid-epoch + resume gives the uninterrupted loss sequence.

The encoder is the UNIK block structure at width 8 (``base_channels``) so that CPU steps are
tiny; the frozen video / text embeddings are seeded stand-ins (see tests/_windows.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _cfg(shards: str, out: Path, **kw):
    from tmor.train.config import PretrainConfig

    base = dict(shards=shards, out_dir=str(out), frames=16, layout=None, channels=3,
                max_persons=1, batch_size=8, num_workers=0, shuffle_buffer=32,
                epoch_samples=64, base_channels=8, proj_dim=32, hidden_dim=64, epochs=3,
                lr=0.05, warmup_steps=2, queue_size=16, eps=0.005, min_samples=4,
                ckpt_every=0, deterministic=True, device="cpu", log_every=100)
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture
def corpus(window_corpus: str) -> str:
    return window_corpus


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def _losses(out: Path) -> np.ndarray:
    df = pd.read_csv(out / "metrics.csv")
    return df[["step", "loss", "loss_mm", "loss_mv"]].to_numpy()


def test_loss_falls_clusters_form_checkpoint_reloads(corpus: str, tmp_path: Path) -> None:
    from tmor.model.checkpoint import load_checkpoint
    from tmor.model.cluster import dbscan_cosine
    from tmor.train.embed import embed_to_parquet
    from tmor.train.guidance import cluster_space
    from tmor.train.pretrain import run_pretrain

    out = tmp_path / "run"
    summary = run_pretrain(_cfg(corpus, out, epochs=1, epoch_samples=128, lr=0.2))
    assert summary["steps"] == 16 and summary["epoch"] == 1
    loss = pd.read_csv(out / "metrics.csv")["loss"].to_numpy()
    assert len(loss) == 16 and np.isfinite(loss).all()
    # the queue is full from the third step on: compare like with like
    assert loss[-6:].mean() < loss[2:8].mean(), loss
    cl = pd.read_csv(out / "clusters.csv")
    assert len(cl) == 1 and (cl["samples"] == 182).all()
    assert cl["clusters"].iloc[-1] >= 2 and 0 < cl["noise_fraction"].iloc[-1] < 1.0
    for name in ("config.yaml", "losses.png", "clusters.png", "epoch_000.pt", "labels.parquet"):
        assert (out / name).is_file(), name
    # the reloaded encoder reproduces the last epoch's clusters from its own embeddings
    labels = pd.read_parquet(out / "labels.parquet")
    n = embed_to_parquet(str(out / "last.pt"), corpus, str(tmp_path / "emb.parquet"),
                         batch_size=64, num_workers=0, device="cpu")
    emb = pd.read_parquet(tmp_path / "emb.parquet")
    assert n == 182 and set(emb["key"]) == set(labels["key"])
    emb = emb.set_index("key").loc[labels["key"]]
    res = dbscan_cosine(cluster_space(np.stack(emb["embedding"].to_numpy())), 0.005, 4,
                        backend="faiss")  # the space pre-training clusters in: centred
    assert res.n_clusters == labels["cluster"].max() + 1
    assert np.array_equal(res.labels, labels["cluster"].to_numpy())
    ck = load_checkpoint(str(out / "last.pt"))
    assert ck["step"] == 16 and ck["train_config"]["base_channels"] == 8
    assert ck["cluster_table"] is not None and set(ck["queues"]) == {"mm", "mv"}


def test_stage2_from_stage1_and_loss_subsets(corpus: str, tmp_path: Path) -> None:
    from tmor.model.checkpoint import load_checkpoint
    from tmor.train.pretrain import run_pretrain

    s1 = tmp_path / "s1"
    run_pretrain(_cfg(corpus, s1, epochs=1, max_steps=2, cluster=False, losses=["mm"]))
    s2 = tmp_path / "s2"
    run_pretrain(_cfg(corpus, s2, stage=2, init=str(s1 / "last.pt"), epochs=1, max_steps=2,
                      cluster=False))
    df = pd.read_csv(s2 / "metrics.csv")
    assert df["loss_mt"].notna().all() and df["loss_mm"].isna().all()
    ck = load_checkpoint(str(s2 / "last.pt"))
    assert ck["pairs"] == ["mt"] and ck["step"] == 2
    none = tmp_path / "none"
    assert run_pretrain(_cfg(corpus, none, losses=["none"]))["steps"] == 0
    init = load_checkpoint(str(none / "last.pt"))["encoder"]
    assert all(torch.isfinite(v.float()).all() for v in init.values())


def _steps(corpus: str, ctx) -> dict:
    """Fixed global batches, this rank's slice of each, a few steps: losses and state."""
    from tmor.shards.reader import ReaderConfig, make_loader
    from tmor.train.pretrain import Trainer

    # the global batches, read alone (rank split off) from the real shards
    rcfg = ReaderConfig(frames=16, layout=None, channels=3, max_persons=1, shuffle_buffer=0,
                        num_workers=0, batch_size=16)
    loader = make_loader(corpus, rcfg)
    loader.stream.rank, loader.stream.world = 0, 1
    batches = [b for _, b in zip(range(3), loader, strict=False)]
    cfg = _cfg(corpus, Path("."), queue_size=24, grad_clip=1.0)
    tr = Trainer(cfg, ctx, 3, 25, 1, 32, 32, total_steps=10)
    # cluster guidance active: windows of the same sequence share a cluster, some are noise
    table = torch.tensor([i // 6 if i % 5 else -1 for i in range(200)])
    tr.set_table(table)
    n = 16 // ctx.world
    losses, first = [], []

    def params() -> list[float]:
        return torch.cat([p.detach().flatten() for p in tr.encoder.parameters()])[::97].tolist()

    for b in batches:
        part = {k: (v[ctx.rank * n:(ctx.rank + 1) * n]) for k, v in b.items()}
        losses.append(float(tr.train_step(part)["loss"]))
        first = first or params()
    return {"losses": losses, "params": params(), "params1": first,
            "bn": tr.encoder.data_bn.running_mean.tolist(),
            "queue": tr.queues["mm"].entries()[1].tolist()}


def test_config_yaml_roundtrip_and_losses(tmp_path: Path) -> None:
    from tmor.config import build
    from tmor.train.config import PretrainConfig, parse_losses

    cfg = PretrainConfig(shards="a/{000000..000003}.tar", stage=2, losses=["mt", "mm"], lr=0.3)
    cfg.to_yaml(str(tmp_path / "c.yaml"))
    again = PretrainConfig.from_yaml(str(tmp_path / "c.yaml"), epochs=4)
    assert again.to_dict() == {**cfg.to_dict(), "epochs": 4}
    assert again.pairs() == ["mt", "mm"] and PretrainConfig(stage=1).pairs() == ["mm", "mv"]
    assert parse_losses("M+V+T") == ["mm", "mv", "mt"] and parse_losses("none") == ["none"]
    assert PretrainConfig(losses=["none"]).pairs() == []
    with pytest.raises(ValueError, match="unknown option 'lrr'"):
        build(PretrainConfig, {"lrr": 1})
    with pytest.raises(ValueError, match="unknown losses"):
        PretrainConfig(losses=["mx"]).pairs()


def _worker(corpus: str, out_json: str) -> None:
    """One rank under torchrun; rank 0 writes the result."""
    from tmor.train.dist import init_distributed

    torch.use_deterministic_algorithms(True)
    ctx = init_distributed("cpu")
    res = _steps(corpus, ctx)
    if ctx.rank == 0:
        Path(out_json).write_text(json.dumps(res))


def _torchrun(nproc: int, corpus: str, out_json: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(Path(__file__).resolve()), "worker", corpus,
           str(out_json)]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out_json.read_text())


def test_two_process_gloo_equals_one_process(corpus: str, tmp_path: Path) -> None:
    from tmor.train.dist import DistContext

    two = _torchrun(2, corpus, tmp_path / "two.json")
    one = _steps(corpus, DistContext())  # this process alone, the whole global batch
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4, atol=1e-5)
    # after one step the weights agree to float precision; later steps let BatchNorm over tiny
    # batches (near-constant joint channels) amplify summation-order noise a little
    np.testing.assert_allclose(two["params1"], one["params1"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two["params"], one["params"], rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(two["bn"], one["bn"], rtol=1e-4, atol=1e-6)
    assert two["queue"] == one["queue"]
    assert one["losses"][0] != one["losses"][-1]


def test_kill_and_resume_matches_uninterrupted(corpus: str, tmp_path: Path) -> None:
    def cfg_file(out: Path) -> Path:
        c = _cfg(corpus, out, epochs=2, epoch_samples=32, ckpt_every=2)
        path = tmp_path / f"{out.name}.yaml"
        c.to_yaml(str(path))
        return path

    def run(out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tmor.cli.train", "pretrain",
                                 "--config", str(cfg_file(out))], env=_env(), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    a, b = tmp_path / "a", tmp_path / "b"
    pa = run(a)
    pb = run(b)
    # kill b with SIGKILL mid-epoch 1 (after step 5 is logged, before the run ends)
    deadline = time.monotonic() + 240
    killed_at = None
    while time.monotonic() < deadline and pb.poll() is None:
        m = b / "metrics.csv"
        if m.exists() and len(m.read_text().splitlines()) - 1 >= 5:
            pb.send_signal(signal.SIGKILL)
            killed_at = len(m.read_text().splitlines()) - 1
            break
        time.sleep(0.05)
    pb.wait()
    assert killed_at is not None and pb.returncode == -signal.SIGKILL
    assert pa.wait(timeout=300) == 0, pa.stderr.read().decode()[-2000:]
    pb2 = run(b)
    assert pb2.wait(timeout=300) == 0, pb2.stderr.read().decode()[-2000:]
    la, lb = _losses(a), _losses(b)
    assert la.shape == lb.shape == (8, 4)
    np.testing.assert_allclose(lb, la, rtol=1e-6, atol=1e-7)
    ca, cb = pd.read_csv(a / "clusters.csv"), pd.read_csv(b / "clusters.csv")
    assert ca[["epoch", "clusters", "noise_fraction"]].equals(
        cb[["epoch", "clusters", "noise_fraction"]])


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    _worker(sys.argv[2], sys.argv[3])
