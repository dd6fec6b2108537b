"""Cluster guidance that cannot collapse: the schedule scales with the run, a clustering with one
dominant cluster is not used as is, and an untrained encoder on real skeletons (whose embeddings
DBSCAN puts into one cluster) trains with a finite, falling loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tmor.model.cluster import dbscan_cosine
from tmor.train.config import PretrainConfig
from tmor.train.guidance import (
    batch_dominated,
    cluster_space,
    guarded_clustering,
    kdist_quantiles,
    largest_fraction,
    plan_schedule,
)


def test_schedule_scales_with_the_run() -> None:
    # the run: 3 epochs of 7 steps; a fixed 500-step warm-up was longer than the run
    s = plan_schedule(PretrainConfig(epochs=3), 7, 21)
    assert 1 <= s.lr_warmup <= 2 and 0 < s.guidance_start < 21
    long = plan_schedule(PretrainConfig(epochs=100), 10_000, 1_000_000)
    assert long.lr_warmup == 50_000 and long.guidance_start == 200_000
    # an explicit LR warm-up longer than a fifth of the run is shortened
    assert plan_schedule(PretrainConfig(warmup_steps=500), 7, 21).lr_warmup == 4
    assert plan_schedule(PretrainConfig(warmup_steps=500), 1000, 10_000).lr_warmup == 500
    # explicit guidance warm-up: steps win over epochs, epochs over the fraction
    assert plan_schedule(PretrainConfig(guidance_warmup_epochs=2), 7, 21).guidance_start == 14
    cfg = PretrainConfig(guidance_warmup_epochs=2, guidance_warmup_steps=3)
    assert plan_schedule(cfg, 7, 21).guidance_start == 3
    assert plan_schedule(PretrainConfig(guidance_warmup_frac=0.0), 7, 21).guidance_start == 0


def _two_level(seed: int = 0) -> np.ndarray:
    """8 tight blobs in 16-d around one direction: at eps 0.3 one cluster, at a k-distance eps
    the 8 blobs."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(16)
    base /= np.linalg.norm(base)
    centres = base + 0.25 * rng.standard_normal((8, 16)) / 4
    x = np.concatenate([c + 0.01 * rng.standard_normal((60, 16)) for c in centres])
    return x.astype(np.float32)


def _dbscan(e: np.ndarray, eps: float, ms: int):
    return dbscan_cosine(e, eps, ms, backend="faiss")


def test_dominant_cluster_gets_eps_from_kdist() -> None:
    x = _two_level()
    assert _dbscan(x, 0.3, 5).n_clusters == 1
    cfg = PretrainConfig(eps=0.3, min_samples=5, max_cluster_fraction=0.25,
                         collapse_eps_quantiles=[0.5], center_embeddings=False)
    labels, guide, info = guarded_clustering(x, cfg, _dbscan)
    assert info["clusters"] == 1 and (labels == 0).all() and info["largest_fraction"] == 1.0
    assert info["action"] == "eps_from_kdist" and info["guide_eps"] < 0.3
    assert info["guide_clusters"] == 8 and largest_fraction(guide) <= 0.25
    assert info["guide_eps"] == pytest.approx(kdist_quantiles(x, 5, [0.5])[0])
    # the guide labels are exact DBSCAN at the chosen eps
    assert np.array_equal(guide, _dbscan(x, info["guide_eps"], 5).labels)


def test_centring_separates_what_a_shared_direction_hides() -> None:
    """UNIK's embeddings share one mean direction (a mean of ReLU outputs); the 8 blobs around
    one direction are one cluster at eps 0.3 as they are, and 8 once centred."""
    x = _two_level()
    cfg = PretrainConfig(eps=0.3, min_samples=5, max_cluster_fraction=0.25)
    labels, guide, info = guarded_clustering(x, cfg, _dbscan)
    assert _dbscan(x, 0.3, 5).n_clusters == 1
    assert info["action"] == "as_is" and info["clusters"] == 8 and (guide == labels).all()
    assert np.array_equal(labels, _dbscan(cluster_space(x), 0.3, 5).labels)


def _chained_blobs(seed: int = 0) -> np.ndarray:
    """8 tight blobs joined in a ring by sparser bridges: at high k-distance quantiles the
    bridges are core and chain the blobs into one dominant cluster, at lower ones they are not."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(16)
    base /= np.linalg.norm(base)
    centres = base + 0.25 * rng.standard_normal((8, 16)) / 4
    blobs = [c + 0.01 * rng.standard_normal((60, 16)) for c in centres]
    t = rng.random((8, 40, 1))
    bridges = [centres[i] + t[i] * (centres[(i + 1) % 8] - centres[i])
               + 0.004 * rng.standard_normal((40, 16)) for i in range(8)]
    return np.concatenate(blobs + bridges).astype(np.float32)


def test_kdist_ladder_takes_the_largest_eps_within_the_limit() -> None:
    x = _chained_blobs()
    ladder = [0.3, 0.9, 0.5, 0.7]  # tried from the highest down, whatever the order given
    cfg = PretrainConfig(eps=0.3, min_samples=5, max_cluster_fraction=0.25,
                         collapse_eps_quantiles=ladder, center_embeddings=False)
    eps = dict(zip(ladder, kdist_quantiles(x, 5, ladder), strict=True))
    frac = {q: largest_fraction(_dbscan(x, e, 5).labels) for q, e in eps.items()}
    assert frac[0.9] > 0.25 and frac[0.7] > 0.25 and frac[0.5] <= 0.25  # the premise
    labels, guide, info = guarded_clustering(x, cfg, _dbscan)
    assert info["action"] == "eps_from_kdist" and info["guide_quantile"] == 0.5
    assert info["guide_eps"] == pytest.approx(eps[0.5])
    assert np.array_equal(guide, _dbscan(x, eps[0.5], 5).labels)
    assert info["guide_largest_fraction"] <= 0.25 and info["guide_clusters"] > 1
    # only dominated quantiles: held back (all noise), naming what was tried
    cfg.collapse_eps_quantiles = [0.9, 0.7]
    _, guide, info = guarded_clustering(x, cfg, _dbscan)
    assert info["action"] == "held_back" and (guide == -1).all()
    assert info["guide_quantile"] == 0.7


def test_collapsed_embeddings_hold_guidance_back() -> None:
    rng = np.random.default_rng(1)
    x = (np.ones(32) + 0.02 * rng.standard_normal((300, 32))).astype(np.float32)  # one blob
    cfg = PretrainConfig(eps=0.1, min_samples=10, max_cluster_fraction=0.5,
                         center_embeddings=False)
    labels, guide, info = guarded_clustering(x, cfg, _dbscan)
    assert info["action"] == "held_back" and info["largest_fraction"] > 0.5
    assert info["clusters"] == 1 and (labels == 0).all()
    assert (guide == -1).all() and info["guide_clusters"] == 0
    # a clustering within the limit is used as is
    ok = PretrainConfig(eps=0.1, min_samples=10, max_cluster_fraction=1.0,
                        center_embeddings=False)
    labels, guide, info = guarded_clustering(x, ok, _dbscan)
    assert info["action"] == "as_is" and info["clusters"] == 1 and (guide == 0).all()


def test_batch_dominated() -> None:
    own = -1 - torch.arange(10)
    assert not batch_dominated(own, 0.5)
    assert batch_dominated(torch.cat([torch.zeros(6, dtype=torch.long), own[:4]]), 0.5)
    assert not batch_dominated(torch.cat([torch.zeros(5, dtype=torch.long), own[:5]]), 0.5)


@pytest.fixture
def corpus(window_corpus: str) -> str:
    return window_corpus


def test_untrained_encoder_one_cluster_guidance_held_back_loss_falls(corpus: str,
                                                                    tmp_path: Path) -> None:
    from tmor.shards.reader import make_loader
    from tmor.train.corpus import reader_config
    from tmor.train.dist import DistContext
    from tmor.train.embed import embed_pass
    from tmor.train.pretrain import Trainer, run_pretrain

    cfg = PretrainConfig(shards=corpus, out_dir=str(tmp_path / "run"), frames=16, layout=None,
                         channels=3, max_persons=1, batch_size=8, num_workers=0,
                         shuffle_buffer=32, epoch_samples=64, base_channels=8, proj_dim=32,
                         hidden_dim=64, epochs=2, lr=0.2, queue_size=16,
                         eps=0.1, min_samples=10, guidance_warmup_steps=0, ckpt_every=0,
                         deterministic=True, device="cpu", log_every=100)
    # the untrained encoder (the run's initial weights) puts the whole corpus in one cluster
    tr = Trainer(cfg, DistContext(), 3, 25, 1, 32, 32, total_steps=16)
    _, _, _, emb = embed_pass(tr.encoder, make_loader(corpus, reader_config(cfg, False)),
                              torch.device("cpu"))
    first = dbscan_cosine(emb, cfg.eps, cfg.min_samples, backend="faiss")
    assert first.n_clusters == 1 and largest_fraction(first.labels) > 0.9

    run_pretrain(cfg)
    out = Path(cfg.out_dir)
    cl = pd.read_csv(out / "clusters.csv")
    m = pd.read_csv(out / "metrics.csv")
    assert len(m) == 16 and len(cl) == 2
    assert np.isfinite(m["loss"]).all()
    # no clustering whose largest cluster is over the limit was used as is
    limit = cfg.max_cluster_fraction
    assert cl["largest_fraction"].iloc[0] > limit and cl["action"].iloc[0] != "as_is"
    assert ((cl["action"] == "as_is") == (cl["largest_fraction"] <= limit)).all()
    used = cl["action"] == "eps_from_kdist"
    assert (cl.loc[used, "guide_largest_fraction"] <= limit).all()
    # after a held-back clustering the next epoch trains without guidance
    for _, row in cl.iterrows():
        nxt = m[m["epoch"] == row["epoch"] + 1]
        if row["action"] == "held_back" and len(nxt):
            assert (nxt["guided"] == 0).all()
    # every step had far fewer positives than candidates, and the loss fell (the queue is full
    # from the third step on: compare like with like)
    assert (m["pos_mm"] < 0.5 * (8 + cfg.queue_size)).all()
    loss = m["loss"].to_numpy()
    assert loss[-6:].mean() < loss[2:8].mean(), loss


def _switch_cfg(corpus: str, out: Path, guidance: bool) -> PretrainConfig:
    return PretrainConfig(shards=corpus, out_dir=str(out), frames=16, layout=None, channels=3,
                          max_persons=1, batch_size=8, num_workers=0, shuffle_buffer=32,
                          epoch_samples=32, base_channels=8, proj_dim=32, hidden_dim=64,
                          epochs=2, lr=0.1, queue_size=16, guidance=guidance, losses=["mm"],
                          guidance_warmup_steps=0, max_cluster_fraction=1.0, ckpt_every=0,
                          deterministic=True, device="cpu", log_every=100, report_to="csv")


def test_guidance_switch_changes_only_the_positives(corpus: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One step from identical states, guidance on and off: the same queries, candidates and
    loss inputs, and only the cluster ids (which select the positives) differ."""
    import tmor.train.pretrain as P
    from tmor.shards.reader import make_loader
    from tmor.train.corpus import reader_config
    from tmor.train.dist import DistContext

    calls: list[tuple] = []
    real = P.cluster_contrastive_loss

    def spy(q, cands, qc, cc, *a, **kw):
        calls.append((q.detach().clone(), cands.detach().clone(), qc.clone(), cc.clone()))
        return real(q, cands, qc, cc, *a, **kw)

    monkeypatch.setattr(P, "cluster_contrastive_loss", spy)
    batch = next(iter(make_loader(corpus, reader_config(_switch_cfg(corpus, tmp_path, True)))))
    runs = {}
    for on in (True, False):
        cfg = _switch_cfg(corpus, tmp_path / str(on), on)
        tr = P.Trainer(cfg, DistContext(), 3, 25, 1, 0, 0, total_steps=8)
        tr.set_table(torch.zeros(int(batch["index"].max()) + 1, dtype=torch.long))  # one
        calls.clear()
        row = tr.train_step(batch)
        runs[on] = (calls[0], row)
    (q1, c1, qc1, cc1), row_on = runs[True]
    (q0, c0, qc0, cc0), row_off = runs[False]
    assert torch.equal(q1, q0) and torch.equal(c1, c0)  # same embeddings reach the loss
    assert (qc1 == 0).all() and (cc1[: len(qc1)] == 0).all()  # on: everyone one cluster
    assert torch.equal(qc0, -1 - batch["index"].long())  # off: each sample its own
    assert row_on["guided"] == 1.0 and row_off["guided"] == 0.0
    assert row_on["pos_mm"] == len(qc1) and row_off["pos_mm"] == 1.0


def test_guidance_off_never_reads_cluster_labels(corpus: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole run with --no-guidance clusters after each epoch (clusters.csv is written) but
    every loss call gets no table: cluster labels are never read."""
    import tmor.train.pretrain as P

    seen: list[object] = []
    real = P.effective_clusters

    def spy(index, table):
        seen.append(table)
        return real(index, table)

    monkeypatch.setattr(P, "effective_clusters", spy)
    cfg = _switch_cfg(corpus, tmp_path / "off", False)
    P.run_pretrain(cfg)
    assert seen and all(t is None for t in seen)
    cl = pd.read_csv(tmp_path / "off" / "clusters.csv")
    assert len(cl) == 2  # the corpus was still clustered (and logged) each epoch
    m = pd.read_csv(tmp_path / "off" / "metrics.csv")
    assert (m["guided"] == 0).all()
