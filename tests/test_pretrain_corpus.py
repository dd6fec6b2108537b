"""Issue 13: a checkpoint is bound to its corpus' index (a resume on a changed corpus is
refused); stage 1 on skeletons without video embeddings drops mv (or refuses an explicit mv with
a one-line message naming --losses mm); --report-to csv,tensorboard,wandb (wandb offline) logs
the run's config and corpus card hash; a checkpoint file cannot run code when loaded."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cfg(shards: str, out: Path, **kw):
    from tmor.train.config import PretrainConfig

    base = dict(shards=shards, out_dir=str(out), frames=16, layout=None, channels=3,
                max_persons=1, batch_size=8, num_workers=0, shuffle_buffer=8,
                epoch_samples=16, base_channels=8, proj_dim=16, hidden_dim=32, epochs=1,
                max_steps=1, lr=0.05, warmup_steps=1, queue_size=16, cluster=False,
                ckpt_every=1, device="cpu", log_every=100, report_to="csv")
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def windows():
    if not DATA.is_dir():
        pytest.skip(f"shared test data not found at {DATA}")
    from _windows import skeleton_windows

    return skeleton_windows(str(DATA), frames=16, stride=16)[:48]


def test_resume_on_a_changed_corpus_is_refused(windows, tmp_path: Path) -> None:
    from _windows import write_window_corpus

    from tmor.model.checkpoint import load_checkpoint
    from tmor.shards.index import index_hash
    from tmor.train.corpus import CorpusChangedError
    from tmor.train.pretrain import run_pretrain

    root = tmp_path / "corpus"
    write_window_corpus(str(root), windows, samples_per_shard=16)
    shards = str(root / "triplets")
    out = tmp_path / "run"
    run_pretrain(_cfg(shards, out))
    ck = load_checkpoint(str(out / "last.pt"))
    before = index_hash(shards)
    assert ck["corpus"]["index_hash"] == before and len(before) == 64
    # the same corpus resumes (one more step)
    assert run_pretrain(_cfg(shards, out, max_steps=2))["resumed"]
    # re-pack in another order: every global index now names another sample
    write_window_corpus(str(root), windows[::-1], samples_per_shard=16, overwrite=True)
    assert index_hash(shards) != before
    with pytest.raises(CorpusChangedError, match=r"refusing to resume .*the corpus changed"):
        run_pretrain(_cfg(shards, out, max_steps=3))


@pytest.fixture(scope="module")
def no_video(tmp_path_factory) -> str:
    from tests._shards_data import import_all

    root = str(tmp_path_factory.mktemp("imported"))
    import_all(root, samples_per_shard=2)  # real skeleton files: no video embeddings
    return f"{root}/triplets"


def test_stage1_without_video_drops_mv_or_refuses(no_video: str, tmp_path: Path,
                                                  caplog) -> None:
    import pandas as pd

    from tmor.model.checkpoint import load_checkpoint
    from tmor.train.pretrain import run_pretrain

    kw = dict(layout="coco17", channels=2, max_persons=2, batch_size=2, epoch_samples=4,
              shuffle_buffer=0)
    with pytest.raises(ValueError, match=r"needs video embeddings.*--losses mm$"):
        run_pretrain(_cfg(no_video, tmp_path / "explicit", losses=["mm", "mv"], **kw))
    with caplog.at_level(logging.WARNING, logger="tmor.train.corpus"):
        summary = run_pretrain(_cfg(no_video, tmp_path / "default", max_steps=2, **kw))
    assert "dropping the mv loss" in caplog.text
    df = pd.read_csv(tmp_path / "default" / "metrics.csv")
    assert summary["steps"] == 2 and df["loss"].notna().all()
    assert torch.isfinite(torch.tensor(df["loss"].to_numpy())).all()
    assert load_checkpoint(str(tmp_path / "default" / "last.pt"))["pairs"] == ["mm"]


def test_report_to_csv_tensorboard_wandb_offline(windows, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    import hashlib
    import json

    from _windows import write_window_corpus

    from tmor.train.pretrain import run_pretrain

    monkeypatch.setenv("WANDB_SILENT", "true")
    root = tmp_path / "corpus"
    write_window_corpus(str(root), windows[:16], samples_per_shard=16)
    out = tmp_path / "run"
    run_pretrain(_cfg(str(root / "triplets"), out, report_to="csv,tensorboard,wandb",
                      max_steps=2))
    card = hashlib.sha256((root / "corpus.json").read_bytes()).hexdigest()
    run = json.loads((out / "run.json").read_text())
    assert run["corpus_card_sha256"] == card and run["config"]["max_steps"] == 2
    assert run["report_to"] == ["csv", "tensorboard", "wandb"]
    assert (out / "metrics.csv").read_text().count("\n") == 3  # header + 2 steps
    try:  # tensorboard (when installed): the scalars and the run's identity as text
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        EventAccumulator = None
    if EventAccumulator is not None:
        ea = EventAccumulator(str(out / "tb"), size_guidance={"tensors": 0})
        ea.Reload()
        assert "train/loss" in ea.Tags()["scalars"]
        text = ea.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert card in text
    # wandb, offline: one run whose records hold the config (with the card hash) and history
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = next(runs[0].glob("*.wandb")).read_bytes()
    assert card.encode() in records and b"max_steps" in records and b"train/loss" in records


class _Evil:
    """Pickles to a call of ``open(marker, 'w')``: code a checkpoint file must not run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_file_cannot_run_code(tmp_path: Path) -> None:
    from tmor.model.checkpoint import (
        UnsafeCheckpointError,
        load_checkpoint,
        load_encoder,
        save_checkpoint,
    )
    from tmor.model.unik import UNIK

    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    enc = UNIK(2, 17, 1, base_channels=8)
    torch.save({"format": 1, "encoder": enc.state_dict(), "payload": _Evil(str(marker))}, bad)
    torch.load(bad, weights_only=False)  # the unsafe way runs it: the file really is hostile
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        load_checkpoint(str(bad))
    with pytest.raises(UnsafeCheckpointError):
        load_encoder(str(bad))
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(str(raw))
    assert not marker.exists()
    # what tmor writes (numpy RNG state included) loads under the same rules
    import numpy as np

    good = tmp_path / "good.pt"
    save_checkpoint(str(good), enc, rng={"numpy": np.random.get_state()}, score=np.float64(1.5))
    ck = load_checkpoint(str(good))
    assert ck["score"] == 1.5 and torch.is_tensor(ck["rng"]["numpy"][1])


def test_the_full_pass_loader_is_built_once_per_corpus(no_video: str) -> None:
    """The re-clustering pass reuses one loader (its persistent workers) epoch after epoch, and
    gets a fresh one when the corpus' index is rewritten."""
    import os

    from tmor.train.config import PretrainConfig
    from tmor.train.corpus import pass_loader

    cfg = PretrainConfig(shards=no_video, num_workers=0, frames=4, layout="coco17")
    a = pass_loader(cfg)
    assert pass_loader(cfg) is a and len([k for b in a for k in b["key"]]) == 6
    index = f"{no_video}/index.parquet"
    st = os.stat(index)
    os.utime(index, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert pass_loader(cfg) is not a
