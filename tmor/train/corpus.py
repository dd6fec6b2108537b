"""The pre-training corpus as the trainer reads it: reader settings from the config, its size."""

from __future__ import annotations

from tmor.train.config import PretrainConfig


def reader_config(cfg: PretrainConfig, train: bool = True):
    """Reader settings of a training pass (shuffled, fixed epoch length) or a full pass."""
    from tmor.shards.reader import ReaderConfig

    return ReaderConfig(
        frames=cfg.frames, layout=cfg.layout, max_persons=cfg.max_persons,
        channels=cfg.channels, shuffle_buffer=cfg.shuffle_buffer if train else 0,
        seed=cfg.seed, epoch_samples=cfg.epoch_samples if train else None,
        num_workers=cfg.num_workers, batch_size=cfg.batch_size if train else cfg.embed_batch_size,
        augment=False, drop_last=train)


def corpus_size(shards: str) -> int | None:
    """Number of samples in the shard index beside the first shard, if any."""
    from tmor.shards.index import read_index
    from tmor.shards.reader import expand_urls, index_location

    where = index_location(expand_urls(shards)[0])
    try:
        return len(read_index(where)) if where else None
    except (FileNotFoundError, OSError):
        return None
