"""Cluster-guided multi-positive InfoNCE, one function for the mm, mv and mt pairs.

For a query motion embedding q_i the candidates are the batch's counterparts (augmented views,
projected video or text embeddings; gathered over ranks under DDP) and the queue's entries.
Every sample has an *effective cluster*: its DBSCAN label, or, for noise (-1) and for samples
never clustered, a cluster of its own (``-1 - index``). Positives of q_i = the candidates in its
effective cluster: its own counterpart, plus same-cluster samples; negatives = all the others.
So a noise sample keeps only its own counterpart (and queue entries of that same sample), and
before the first clustering the loss is plain InfoNCE.

    L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / tau) / sum_{j in C} exp(s_ij / tau) )

with s the cosine similarity; the loss is the mean over queries that have a positive, and
exactly 0 (finite, zero gradients) when no query has one.
"""

from __future__ import annotations

import torch


def effective_clusters(index: torch.Tensor, table: torch.Tensor | None) -> torch.Tensor:
    """Cluster id per dataset index: ``table[index]`` if >= 0, else the unique ``-1 - index``.

    ``table`` maps a global sample index to its DBSCAN label (-1 noise); indices beyond its
    length, and every index when ``table`` is None (before the first clustering), are their own
    cluster.
    """
    index = index.long()
    own = -1 - index
    if table is None or table.numel() == 0:
        return own
    table = table.to(index.device)
    # a gather at a clamped index, then a select: no boolean indexing, so no device read
    inside = index < table.numel()
    lab = torch.where(inside, table[index.clamp(max=table.numel() - 1)].long(), -1)
    return torch.where(lab >= 0, lab, own)


def positive_mask(query_cluster: torch.Tensor, cand_cluster: torch.Tensor,
                  cand_valid: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) bool: candidate j is a positive of query i (same effective cluster, valid)."""
    mask = query_cluster[:, None] == cand_cluster[None, :]
    if cand_valid is not None:
        mask &= cand_valid[None, :]
    return mask


def cluster_contrastive_loss(query: torch.Tensor, cands: torch.Tensor,
                             query_cluster: torch.Tensor, cand_cluster: torch.Tensor,
                             temperature: float = 0.07,
                             query_valid: torch.Tensor | None = None,
                             cand_valid: torch.Tensor | None = None,
                             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Multi-positive InfoNCE of queries (N, D) against candidates (K, D).

    ``query`` and ``cands`` are normalized here (cosine similarity). ``cand_valid`` drops
    candidates (e.g. samples without a video embedding); ``query_valid`` drops queries. Returns
    the loss and statistics as 0-d tensors on the queries' device (mean positives and
    negatives per query, queries used): nothing here reads a value back to the host.
    """
    q = torch.nn.functional.normalize(query.float(), dim=-1)
    c = torch.nn.functional.normalize(cands.float(), dim=-1)
    logits = q @ c.t() / temperature
    if cand_valid is not None:  # the lowest float, not -inf: a row of only dropped candidates
        # stays finite (its softmax is uniform, its gradient zero), and exp() of it is 0
        logits = logits.masked_fill(~cand_valid[None, :], torch.finfo(logits.dtype).min)
    pos = positive_mask(query_cluster, cand_cluster, cand_valid)
    npos = pos.sum(1)
    rows = npos > 0
    if query_valid is not None:
        rows &= query_valid
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(~pos, 0.0)
    per_query = -log_prob.sum(1) / npos.clamp_min(1)
    used = rows.sum()
    # the mean over the used queries; exactly 0 with zero gradients when there is none
    loss = torch.where(rows, per_query, 0.0).sum() / used.clamp_min(1)
    nvalid = (cand_valid.sum() if cand_valid is not None
              else torch.full((), float(c.shape[0]), device=q.device))
    positives = torch.where(rows, npos, 0).sum() / used.clamp_min(1)
    stats = {
        "queries": used.float(),
        "positives": positives.float(),
        "negatives": torch.where(used > 0, nvalid.to(positives) - positives, 0.0).float(),
    }
    return loss, stats
