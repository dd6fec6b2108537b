"""The pre-training corpus as the trainer reads it: reader settings from the config, its size,
the hash of its index (what a checkpoint's sample indices refer to), and the loss pairs its
samples can serve."""

from __future__ import annotations

import logging

from tmor.devices import resolve_device
from tmor.train.config import PretrainConfig

log = logging.getLogger(__name__)


class CorpusChangedError(ValueError):
    """A resume on shards whose index differs from the one the checkpoint was trained on."""


def reader_config(cfg: PretrainConfig, train: bool = True):
    """Reader settings of a training pass (shuffled, fixed epoch length) or a full pass."""
    from tmor.shards.reader import ReaderConfig

    return ReaderConfig(
        frames=cfg.frames, layout=cfg.layout, max_persons=cfg.max_persons,
        channels=cfg.channels, shuffle_buffer=cfg.shuffle_buffer if train else 0,
        seed=cfg.seed, epoch_samples=cfg.epoch_samples if train else None,
        num_workers=cfg.num_workers, batch_size=cfg.batch_size if train else cfg.embed_batch_size,
        augment=False, drop_last=train,
        pin_memory=resolve_device(cfg.device).startswith("cuda"))


_PASS_LOADERS: dict[tuple[str, str], object] = {}


def pass_loader(cfg: PretrainConfig):
    """The loader of a full pass over the corpus (embedding for re-clustering), built once per
    (shards, reader settings) and reused, so its persistent workers are forked once per run
    rather than once per epoch."""
    from tmor import fsio
    from tmor.shards.index import index_url
    from tmor.shards.reader import make_loader

    rcfg = reader_config(cfg, train=False)
    stamp = ""
    where = _index_folder(cfg.shards)
    if where and fsio.exists(index_url(where)):  # a rewritten corpus gets a fresh loader
        fs, path = fsio.filesystem(index_url(where))
        info = fs.info(path)
        stamp = f"{info.get('size')}:{info.get('mtime', info.get('LastModified'))}"
    key = (f"{cfg.shards}|{stamp}", repr(rcfg))
    if key not in _PASS_LOADERS:
        _PASS_LOADERS.clear()  # one corpus at a time: let an earlier run's workers go
        _PASS_LOADERS[key] = make_loader(cfg.shards, rcfg)
    return _PASS_LOADERS[key]


def _index_folder(shards: str) -> str | None:
    from tmor.shards.reader import expand_urls, index_location

    return index_location(expand_urls(shards)[0])


def corpus_size(shards: str) -> int | None:
    """Number of samples in the shard index beside the first shard, if any."""
    from tmor.shards.index import read_shard_table

    where = _index_folder(shards)
    try:
        table = read_shard_table(where) if where else None
    except (FileNotFoundError, OSError):
        return None
    return None if table is None else table.samples


def corpus_index_hash(shards: str) -> str | None:
    """:func:`tmor.shards.index.index_hash` of the index beside the first shard (None: none)."""
    from tmor.shards.index import index_hash

    where = _index_folder(shards)
    return index_hash(where) if where else None


def check_resume_corpus(checkpoint: dict, current: str | None, url: str, shards: str) -> None:
    """Refuse to resume a run whose checkpoint was trained on a corpus with another index: its
    queue and cluster table hold global sample indices that would now name other samples."""
    saved = (checkpoint.get("corpus") or {}).get("index_hash")
    if saved is None:
        log.warning("%s records no corpus index hash (an older checkpoint): resuming without "
                    "checking that %s is the corpus it was trained on", url, shards)
        return
    if saved != current:
        raise CorpusChangedError(
            f"refusing to resume {url}: it was trained on a corpus whose index hash is "
            f"{saved[:12]}, but {shards} now has index hash "
            f"{current[:12] if current else 'none (no index.parquet)'}; the corpus changed "
            "(re-packed, shards added or removed), so the checkpoint's queue and cluster labels "
            "would point at other samples. Resume on the original shards, or start a new run "
            "(another --out-dir, or --init the checkpoint for the weights only).")


def usable_pairs(cfg: PretrainConfig, video_dim: int, text_dim: int) -> list[str]:
    """The configured loss pairs that the corpus can serve. A pair whose target embedding the
    shards lack is dropped with a warning when it came from the stage's default, and refused
    with a one-line error when asked for explicitly."""
    pairs = cfg.pairs()
    missing = {"mv": ("video", video_dim), "mt": ("text", text_dim)}
    out = []
    for p in pairs:
        what, dim = missing.get(p, ("", 1))
        if dim > 0:
            out.append(p)
            continue
        keep = [q for q in pairs if q != p and missing.get(q, ("", 1))[1] > 0]
        hint = f"--losses {','.join(keep)}" if keep else "--losses mm"
        if cfg.losses:
            raise ValueError(f"the {p} loss needs {what} embeddings, but the shards have none "
                             f"(tmor-data embed + pack adds them): pre-train with {hint}")
        log.warning("the shards have no %s embeddings: dropping the %s loss of stage %d "
                    "(as %s)", what, p, cfg.stage, hint)
    if pairs and not out:
        raise ValueError(f"the shards serve none of the losses {pairs}: pre-train with "
                         "--losses mm")
    return out
