"""The CUDA branches of the GPU paths, run on the CPU (issue 22): what a GPU run would do that a
CPU run does not, checked without a GPU.

- a training step never makes the host wait for the device: run on the ``meta`` device, where
  every value read (``.item()``, ``bool()``, boolean indexing) fails, with every host-to-device
  copy non-blocking; its statistics come back in one copy per log interval;
- a resume reads the checkpoint onto the CPU whatever the run's device (``meta`` stands in for
  CUDA: a checkpoint mapped there cannot be read back), and restores the RNG states;
- ``--device cuda:1`` in one process stays GPU 1.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class BlockingCopies(TorchDispatchMode):
    """Records host-to-device copies made without ``non_blocking`` (on CUDA each waits for the
    device's queue to drain)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocking: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        aten = torch.ops.aten
        if func is aten._to_copy.default:
            src, dev = args[0], kwargs.get("device")
            if (src.device.type == "cpu" and dev is not None and torch.device(dev).type != "cpu"
                    and not kwargs.get("non_blocking", False)):
                self.blocking.append(f"{func} {tuple(src.shape)}")
        elif func is aten.copy_.default:
            dst, src = args[0], args[1]
            nb = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
            if src.device.type == "cpu" and dst.device.type != "cpu" and not nb:
                self.blocking.append(f"{func} {tuple(src.shape)}")
        return func(*args, **kwargs)


def _trainer(device: str, **kw):
    from tmor.train.config import PretrainConfig
    from tmor.train.dist import DistContext
    from tmor.train.pretrain import Trainer

    kw = {"queue_size": 16, **kw}
    cfg = PretrainConfig(base_channels=8, proj_dim=16, hidden_dim=32,
                         warmup_steps=1, device="cpu", grad_clip=1.0, **kw)
    return Trainer(cfg, DistContext(device=torch.device(device)), 3, 25, 1, 32, 32,
                   total_steps=10)


def _batch(n: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    has_video = torch.ones(n, dtype=torch.bool)
    has_video[2] = False  # one sample without a video embedding: the mv pushes skip it
    return {"pose": torch.randn(n, 3, 16, 25, 1, generator=g),
            "video": torch.randn(n, 32, generator=g), "text": torch.randn(n, 32, generator=g),
            "has_video": has_video, "has_text": torch.ones(n, dtype=torch.bool),
            "index": torch.arange(n) + 8 * seed}


def test_training_step_never_waits_for_the_device() -> None:
    tr = _trainer("meta", queue_size=32)
    with BlockingCopies() as copies:
        rows = [tr.train_step(_batch(seed=i)) for i in range(3)]
    assert copies.blocking == []
    assert tr.step == 3 and rows[-1]["loss"].device.type == "meta"
    assert tr.queues["mv"].count == 3 * 7 and tr.queues["mm"].count == 3 * 8  # host-known counts


def test_step_statistics_come_back_in_one_copy_per_interval() -> None:
    tr = _trainer("cpu")
    rows = [tr.train_step(_batch(seed=i)) for i in range(3)]
    flushed = tr.flush_rows()
    assert tr.flush_rows() == []
    assert [r["step"] for r in flushed] == [1, 2, 3]
    for lazy, row in zip(rows, flushed, strict=True):
        for k in ("loss", "loss_mm", "loss_mv", "pos_mm", "pos_mv"):
            assert isinstance(row[k], float) and row[k] == float(lazy[k])
        assert row["samples_per_s"] > 0 and row["guided"] == 0.0
    assert flushed[0]["loss"] == pytest.approx(flushed[0]["loss_mm"] + flushed[0]["loss_mv"])


def test_resume_reads_the_checkpoint_onto_the_cpu(tmp_path) -> None:
    tr = _trainer("cpu")
    tr.table = torch.tensor([i // 3 for i in range(40)])
    tr.train_step(_batch())
    np.random.seed(123)
    random.seed(5)
    want_np, want_py, want_torch = np.random.get_state(), random.getstate(), torch.get_rng_state()
    tr.save(str(tmp_path / "last.pt"))
    np.random.seed(0)
    random.seed(0)
    torch.manual_seed(0)
    other = _trainer("cpu")
    other.ctx.device = torch.device("meta")  # the run's device: where its cluster labels go
    other.load(str(tmp_path / "last.pt"))
    got = np.random.get_state()
    assert got[0] == want_np[0] and np.array_equal(got[1], want_np[1]) and got[2:] == want_np[2:]
    assert random.getstate() == want_py and torch.equal(torch.get_rng_state(), want_torch)
    assert other.step == 1 and other.table.device.type == "meta"
    for a, b in zip(tr.encoder.state_dict().values(), other.encoder.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(other.queues["mm"].entries()[1], tr.queues["mm"].entries()[1])


def test_effective_clusters_read_nothing_back() -> None:
    from tmor.model.losses import effective_clusters

    table = torch.tensor([0, -1, 1, 1, -1])
    index = torch.tensor([0, 1, 2, 3, 9, 4])
    want = effective_clusters(index, table)
    assert want.tolist() == [0, -2, 1, 1, -10, -5]
    meta = effective_clusters(index.to("meta"), table.to("meta"))  # fails on a value read
    assert meta.shape == want.shape


@pytest.mark.parametrize("device, world, local, want", [
    ("cuda:1", 1, 0, "cuda:1"), ("cuda", 1, 0, "cuda:0"), ("cuda:1", 2, 1, "cuda:1"),
    ("cuda", 4, 3, "cuda:3"), ("cuda:2", 2, 0, "cuda:0"), ("cpu", 2, 1, "cpu")])
def test_rank_device(device: str, world: int, local: int, want: str) -> None:
    from tmor.train.dist import rank_device

    assert rank_device(device, world, local) == torch.device(want)


def test_attention_logits_do_not_overflow_under_fp16_autocast() -> None:
    """C_e T = 16 x 64 products per attention logit: unscaled, large activations pass fp16's
    65,504 and the softmax turns to NaN."""
    from tmor.model.unik import SpatialUnit

    torch.manual_seed(0)
    unit = SpatialUnit(64, 64, 17).eval()
    torch.nn.init.ones_(unit.bn.weight)  # the attention branch counts fully (init: 1e-6)
    x = torch.randn(2, 64, 64, 17) * 12
    with torch.no_grad():
        q = unit.theta[0](x).reshape(2, -1, 17)
        k = unit.phi[0](x).reshape(2, -1, 17)
        assert (q.transpose(1, 2) @ k).abs().max() > 65504  # the unscaled logits overflow
        ref = unit(x)
        with torch.autocast("cpu", dtype=torch.float16):
            half = unit(x)
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), ref, rtol=0, atol=2e-3 * float(ref.abs().max()))
