"""Cluster-guided loss: positive/negative sets exactly as specified, value = direct computation;
the FIFO queue; the augmentations."""

from __future__ import annotations

import math

import torch

from tmor.model.losses import cluster_contrastive_loss, effective_clusters, positive_mask
from tmor.model.queue import FeatureQueue
from tmor.skeleton.augment import augment, spatial_transform, temporal_crop


def _direct_loss(q, c, pos_sets, tau):
    """Python-loop reference: mean over queries of -1/|P| sum_p log softmax."""
    total, used = 0.0, 0
    for i in range(q.shape[0]):
        if not pos_sets[i]:
            continue
        qi = q[i] / q[i].norm()
        sims = [float(qi @ (c[j] / c[j].norm())) / tau for j in range(c.shape[0])]
        denom = math.log(sum(math.exp(s) for s in sims))
        total += -sum(sims[p] - denom for p in pos_sets[i]) / len(pos_sets[i])
        used += 1
    return total / used


def _setup():
    g = torch.Generator().manual_seed(0)
    # batch of 4 samples (dataset indices 10..13), queue of 6 entries (indices below)
    batch_index = torch.tensor([10, 11, 12, 13])
    queue_index = torch.tensor([20, 21, 22, 11, 23, 24])
    # cluster table over dataset indices: 10, 20, 21 -> cluster 0; 11, 22 -> cluster 1;
    # 12 is noise; 23 noise; 13 and 24 -> cluster 2
    table = torch.full((30,), -1)
    table[[10, 20, 21]] = 0
    table[[11, 22]] = 1
    table[[13, 24]] = 2
    q = torch.randn(4, 8, generator=g)
    keys = torch.randn(4, 8, generator=g)
    qfeats = torch.randn(6, 8, generator=g)
    return batch_index, queue_index, table, q, keys, qfeats


def test_positive_and_negative_sets_are_exactly_specified() -> None:
    batch_index, queue_index, table, _, _, _ = _setup()
    qc = effective_clusters(batch_index, table)
    cc = effective_clusters(torch.cat([batch_index, queue_index]), table)
    mask = positive_mask(qc, cc)
    cand = torch.cat([batch_index, queue_index]).tolist()
    pos = {int(batch_index[i]): sorted(cand[j] for j in range(len(cand)) if mask[i, j])
           for i in range(4)}
    # own counterpart + same-cluster samples (batch or queue)
    assert pos[10] == [10, 20, 21]
    assert pos[11] == [11, 11, 22]          # its own counterpart and its own past queue entry
    assert pos[12] == [12]                  # noise: only its own counterpart
    assert pos[13] == [13, 24]
    # negatives are the complement: e.g. noise 23 is a negative of everyone
    assert not mask[:, cand.index(23)].any()


def test_before_first_clustering_is_plain_infonce() -> None:
    batch_index, queue_index, _, q, keys, qfeats = _setup()
    qc = effective_clusters(batch_index, None)
    cc = effective_clusters(torch.cat([batch_index, torch.tensor([20, 21, 22, 99, 23, 24])]),
                            None)
    mask = positive_mask(qc, cc)
    assert torch.equal(mask, torch.eye(4, 10, dtype=torch.bool))
    loss, _ = cluster_contrastive_loss(q, torch.cat([keys, qfeats]), qc, cc, temperature=0.1)
    c = torch.cat([keys, qfeats])
    expected = torch.nn.functional.cross_entropy(
        torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(c, dim=1).T / 0.1,
        torch.arange(4))
    torch.testing.assert_close(loss, expected)


def test_value_equals_direct_computation() -> None:
    batch_index, queue_index, table, q, keys, qfeats = _setup()
    qc = effective_clusters(batch_index, table)
    cand_index = torch.cat([batch_index, queue_index])
    cc = effective_clusters(cand_index, table)
    cands = torch.cat([keys, qfeats])
    loss, stats = cluster_contrastive_loss(q, cands, qc, cc, temperature=0.2)
    pos_sets = [[j for j in range(10) if int(cc[j]) == int(qc[i])] for i in range(4)]
    assert pos_sets == [[0, 4, 5], [1, 6, 7], [2], [3, 9]]
    assert math.isclose(float(loss), _direct_loss(q, cands, pos_sets, 0.2), rel_tol=1e-5)
    assert stats["queries"] == 4 and math.isclose(stats["positives"], 9 / 4)


def test_invalid_candidates_and_queries_are_dropped() -> None:
    batch_index, queue_index, table, q, keys, qfeats = _setup()
    qc = effective_clusters(batch_index, table)
    cc = effective_clusters(torch.cat([batch_index, queue_index]), table)
    cands = torch.cat([keys, qfeats])
    cand_valid = torch.ones(10, dtype=torch.bool)
    cand_valid[[0, 8]] = False            # sample 10 has no video; queue entry 23 absent
    loss, stats = cluster_contrastive_loss(q, cands, qc, cc, 0.2, cand_valid=cand_valid)
    keep = [j for j in range(10) if cand_valid[j]]
    pos_sets = [[keep.index(j) for j in keep if int(cc[j]) == int(qc[i])] for i in range(4)]
    assert pos_sets[0] == [keep.index(4), keep.index(5)]  # same-cluster queue entries remain
    direct = _direct_loss(q, cands[keep], pos_sets, 0.2)
    assert math.isclose(float(loss), direct, rel_tol=1e-5)
    qv = torch.tensor([True, False, True, True])
    loss2, stats2 = cluster_contrastive_loss(q, cands, qc, cc, 0.2, query_valid=qv)
    assert stats2["queries"] == 3
    pos_all = [[j for j in range(10) if int(cc[j]) == int(qc[i])] for i in range(4)]
    pos_all[1] = []
    assert math.isclose(float(loss2), _direct_loss(q, cands, pos_all, 0.2), rel_tol=1e-5)


def test_no_usable_query_gives_zero_not_nan() -> None:
    """A rank whose batch has no video at all (every mv candidate masked to -inf, no valid
    query): the loss is exactly 0, finite, and its gradients are finite zeros (issue 13)."""
    batch_index, _, table, q, keys, _ = _setup()
    q = q.clone().requires_grad_(True)
    keys = keys.clone().requires_grad_(True)
    qc = effective_clusters(batch_index, table)
    none = torch.zeros(4, dtype=torch.bool)
    loss, stats = cluster_contrastive_loss(q, keys, qc, qc, 0.07, query_valid=none,
                                           cand_valid=none)
    assert float(loss) == 0.0 and torch.isfinite(loss) and stats["queries"] == 0
    loss.backward()
    assert torch.equal(q.grad, torch.zeros_like(q))
    assert torch.equal(keys.grad, torch.zeros_like(keys))
    # some candidates masked, no valid query: still 0, not NaN
    part = torch.tensor([True, False, True, False])
    loss2, _ = cluster_contrastive_loss(q, keys, qc, qc, 0.07, query_valid=none, cand_valid=part)
    assert float(loss2) == 0.0


def test_loss_gradient_pulls_positives_together() -> None:
    batch_index, queue_index, table, q, keys, qfeats = _setup()
    q = q.clone().requires_grad_(True)
    qc = effective_clusters(batch_index, table)
    cc = effective_clusters(torch.cat([batch_index, queue_index]), table)
    cands = torch.cat([keys, qfeats])
    loss, _ = cluster_contrastive_loss(q, cands, qc, cc, 0.2)
    loss.backward()
    with torch.no_grad():
        loss2, _ = cluster_contrastive_loss(q - 0.5 * q.grad, cands, qc, cc, 0.2)
    assert loss2 < loss


def test_queue_is_fifo_with_indices() -> None:
    qu = FeatureQueue(5, 2)
    qu.push(torch.ones(3, 2), torch.tensor([0, 1, 2]))
    f, i = qu.entries()
    assert i.tolist() == [0, 1, 2] and f.shape == (3, 2)
    qu.push(2 * torch.ones(4, 2), torch.tensor([3, 4, 5, 6]))
    f, i = qu.entries()
    assert i.tolist() == [2, 3, 4, 5, 6]
    assert f[:, 0].tolist() == [1, 2, 2, 2, 2]
    other = FeatureQueue(5, 2)
    other.load_state_dict(qu.state_dict())
    assert torch.equal(other.entries()[1], i)
    qu.push(torch.zeros(7, 2), torch.arange(100, 107))
    assert qu.entries()[1].tolist() == [102, 103, 104, 105, 106]


def test_augmentations() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 16, 25, 2)
    y = spatial_transform(x, g)
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), rtol=1e-4, atol=1e-4)  # rotation
    assert not torch.allclose(y, x)
    x2 = torch.randn(4, 2, 16, 17, 1)
    y2 = spatial_transform(x2, g)
    assert y2.shape == x2.shape and not torch.allclose(y2, x2)
    # a temporal crop of a linear ramp in time stays monotone and inside the original range
    ramp = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(4, 2, 16, 3, 1).contiguous()
    c = temporal_crop(ramp, g, min_ratio=0.5)
    assert c.shape == ramp.shape
    assert (c.diff(dim=2) >= 0).all() and c.min() >= 0 and c.max() <= 15
    assert (c[:, 0, -1, 0, 0] - c[:, 0, 0, 0, 0] < 15).any()  # some view is cropped
    full = temporal_crop(ramp, g, min_ratio=1.0)
    torch.testing.assert_close(full, ramp)
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_augment_slices_of_a_global_batch_equal_the_whole() -> None:
    x = torch.randn(6, 2, 16, 17, 2)
    whole = augment(x, torch.Generator().manual_seed(9))
    parts = [augment(x[o:o + 3], torch.Generator().manual_seed(9), total=6, offset=o)
             for o in (0, 3)]
    torch.testing.assert_close(torch.cat(parts), whole)
