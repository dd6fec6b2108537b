"""Input lists, sample keys, the shard plan and the per-stage ledgers."""
