"""The streaming reader of triplet shards, and a map-style dataset over pyskl annotations.

``make_loader(urls, cfg)`` yields batch dicts (docs/contracts.md):
pose (N, C, T, V, M) float32 normalized; video (N, Dv) / text (N, Dt) float32 with has_video /
has_text (N,) bool; index (N,) int64 global sample index (-1 when unknown); key list[str];
label list[str | None].

A webdataset pipeline per DataLoader worker (:class:`webdataset.DataPipeline`):

    shard list (split by node, then by worker; or resampled shards) -> tar samples (a fast
    streaming parser with tario's safety checks) -> shuffle buffer -> decode (error handler)
    -> with_epoch(quota)

Shard URLs, streams and the shuffle buffer come from :mod:`tmor.shards.stream` (no torch there).
Shards are split by node (torch.distributed rank) and by DataLoader worker; when there are fewer
shards than (ranks x workers), samples are split instead, so no two workers read the same
sample. With ``epoch_samples`` set every rank yields exactly ``epoch_samples // world_size``
samples per epoch (each worker its share), cycling over its shards, so DDP ranks stay in step.
Workers are persistent: forked once, told the epoch through shared memory.

The global index of a sample is its shard's offset plus its position in the tar, from the
per-shard table of the index file (:func:`tmor.shards.index.read_shard_table`), so a worker holds
one row per shard, not a map of every key. A truncated or unreadable shard, and a sample that
does not decode, are skipped and counted (:attr:`TripletLoader.skipped`, a warning in the log);
a tar that breaks a safety rule (path traversal, links, oversized or duplicate members) stops
the run with :class:`~tmor.shards.tario.UnsafeTarError`.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

from tmor.shards.codec import Triplet, decode_triplet
from tmor.shards.stream import expand_urls, iter_shard, shuffle_buffer
from tmor.shards.tario import MAX_MEMBER_BYTES, UnsafeTarError
from tmor.shards.tarstream import TruncatedTarError
from tmor.skeleton.transforms import pyskl_arrays, to_ctvm

log = logging.getLogger(__name__)

POSE_FIELDS = ("keypoint", "keypoint_score", "layout", "fps")


@dataclass
class ReaderConfig:
    """Options of the streaming reader (every field is also a YAML key)."""

    frames: int = 64  # T
    layout: str | None = "coco17"  # target joint layout; None keeps the shards' layout
    max_persons: int = 2  # M
    channels: int = 2  # 2: x, y; 3: keypoint_3d (or x, y, score when a sample has no 3D)
    shuffle_buffer: int = 1000  # 0 or 1: no shuffling
    seed: int = 0
    epoch_samples: int | None = None  # samples per epoch over all ranks; None: one pass
    num_workers: int = 2
    batch_size: int = 64
    augment: bool = False  # random temporal crop + rotation
    drop_last: bool = True
    video_dim: int | None = None  # None: read from the first sample that has one
    text_dim: int | None = None
    index_url: str | None = None  # shard index file; default <shard folder>/index.parquet
    max_member_bytes: int = MAX_MEMBER_BYTES
    resample: bool = False  # draw shards with replacement (needs epoch_samples), as open_clip
    persistent_workers: bool = True  # fork DataLoader workers once, not every epoch
    prefetch_factor: int = 4  # batches each worker keeps ready
    # batches in page-locked memory, so that ``.to(cuda, non_blocking=True)`` really overlaps
    # (the trainer sets it when its device is CUDA; pinning needs a CUDA build with a GPU)
    pin_memory: bool = False


def index_location(url: str) -> str | None:
    """The folder whose index.parquet numbers the samples of shard ``url`` (None for pipes)."""
    if url.startswith("pipe:") or "/" not in url:
        return None
    return url.rsplit("/", 1)[0]


def rank_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return 0, 1


def split_counts(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def sample_dims(urls: list[str], cfg: ReaderConfig) -> tuple[int, int]:
    """(Dv, Dt): from the config, else from the first samples of the first shard (0 if none)."""
    dv, dt = cfg.video_dim, cfg.text_dim
    if dv is not None and dt is not None:
        return dv, dt
    found_v = found_t = 0
    try:
        for _, members in iter_shard(urls[0], cfg.max_member_bytes):
            try:
                t = decode_triplet("probe", members)
            except ValueError:  # a sample that does not decode: the reader skips it too
                continue
            found_v = found_v or (t.video.shape[0] if t.video is not None else 0)
            found_t = found_t or (t.text.shape[0] if t.text is not None else 0)
            if found_v and found_t:
                break
    except (TruncatedTarError, OSError) as e:  # a damaged first shard: what it gave is enough
        log.warning("probing embedding sizes: %s", e)
    return (dv if dv is not None else found_v), (dt if dt is not None else found_t)


class SkipCounter:
    """The pipeline's error handler: counts skipped samples and shards in shared memory (every
    worker adds to the same counters), logs the first few, re-raises safety violations."""

    def __init__(self, log_first: int = 5) -> None:
        ctx = mp.get_context("fork" if os.name == "posix" else None)
        self._samples = ctx.Value("q", 0)
        self._shards = ctx.Value("q", 0)
        self.log_first = log_first

    @property
    def counts(self) -> dict[str, int]:
        return {"samples": int(self._samples.value), "shards": int(self._shards.value)}

    def shard(self, exn: BaseException) -> None:
        with self._shards.get_lock():
            self._shards.value += 1
            n = self._shards.value
        if n <= self.log_first:
            log.warning("skipped the rest of a shard (%d so far): %s", n, exn)

    def __call__(self, exn: BaseException) -> bool:
        """webdataset handler protocol: True = skip the sample and go on."""
        if isinstance(exn, UnsafeTarError) and not isinstance(exn, TruncatedTarError):
            raise exn
        with self._samples.get_lock():
            self._samples.value += 1
            n = self._samples.value
        if n <= self.log_first:
            log.warning("skipped a sample that does not decode (%d so far): %s", n, exn)
        return True


class SharedEpoch:
    """The epoch number in shared memory, so persistent workers see ``set_epoch``."""

    def __init__(self, epoch: int = 0) -> None:
        ctx = mp.get_context("fork" if os.name == "posix" else None)
        self._value = ctx.Value("i", epoch)

    def set(self, epoch: int) -> None:
        self._value.value = int(epoch)

    def get(self) -> int:
        return int(self._value.value)


# -- pipeline stages (each a function of the previous stage's iterator) ---------------------------
def shard_list(shards: list[str], stride: int, offset: int, rng: np.random.Generator,
               shuffle: bool) -> Iterator[dict[str, Any]]:
    """One pass over this worker's shards (node- and worker-split), in a shuffled order."""
    order = list(shards)
    if shuffle:
        rng.shuffle(order)
    for url in order:
        yield {"url": url, "stride": stride, "offset": offset}


def resampled_shards(urls: list[str], rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """Shards drawn with replacement, forever (``with_epoch`` bounds the epoch)."""
    while True:
        yield {"url": urls[int(rng.integers(len(urls)))], "stride": 1, "offset": 0}


def tar_samples(src: Iterator[dict[str, Any]], max_bytes: int,
                handler: SkipCounter) -> Iterator[dict[str, Any]]:
    """Shard dicts -> raw samples {url, key, position, members}; keeps every ``stride``-th
    sample from ``offset`` (the sample split). A truncated or unreadable shard is counted and
    the samples read before the damage are kept; a safety violation raises."""
    for shard in src:
        url, stride, offset = shard["url"], shard["stride"], shard["offset"]
        try:
            for pos, (key, members) in enumerate(iter_shard(url, max_bytes)):
                if pos % stride == offset:
                    yield {"url": url, "key": key, "position": pos, "members": members}
        except TruncatedTarError as e:
            handler.shard(e)
        except UnsafeTarError:
            raise
        except OSError as e:
            handler.shard(e)


class TripletStream(tud.IterableDataset):
    """An iterable dataset of per-sample dicts; pickled to DataLoader workers."""

    def __init__(self, urls: list[str], cfg: ReaderConfig, dims: tuple[int, int]):
        self.urls, self.cfg, self.dims = urls, cfg, dims
        self.rank, self.world = rank_world()
        self._epoch = SharedEpoch()
        self.errors = SkipCounter()
        self._tables: dict[str, Any] = {}

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def samples_per_rank(self) -> int | None:
        e = self.cfg.epoch_samples
        return None if e is None else e // self.world

    def _global_index(self, url: str, position: int) -> int:
        """Shard offset + position, from the index file's per-shard table."""
        from tmor.shards.index import read_shard_table, shard_number

        where = self.cfg.index_url or index_location(url)
        if where is None:
            return -1
        if where not in self._tables:
            self._tables[where] = read_shard_table(where)
        table = self._tables[where]
        return -1 if table is None else table.global_index(shard_number(url), position)

    def _assignment(self, worker: int, workers: int) -> tuple[list[str], int, int]:
        """(my shards, sample stride, sample offset) for this rank and worker: split by node
        and by worker over shards, or over samples when shards are fewer than the slots."""
        slots, slot = self.world * workers, self.rank * workers + worker
        if len(self.urls) >= slots:
            return self.urls[slot::slots], 1, 0
        return list(self.urls), slots, slot

    def pipeline(self, worker: int, workers: int) -> Any:
        """This worker's webdataset pipeline for the current epoch (None: nothing to read)."""
        import webdataset as wds

        cfg = self.cfg
        seed = [cfg.seed, self.epoch, self.rank, worker]
        rng = np.random.default_rng(seed)
        aug_rng = np.random.default_rng([*seed, 1]) if cfg.augment else None
        per_rank = self.samples_per_rank()
        quota = None if per_rank is None else split_counts(per_rank, workers)[worker]
        if quota == 0:
            return None
        if cfg.resample:
            if quota is None:
                raise ValueError("resample needs epoch_samples (the epoch length)")
            source: Any = functools.partial(resampled_shards, self.urls, rng)
        else:
            shards, stride, offset = self._assignment(worker, workers)
            source = functools.partial(shard_list, shards, stride, offset, rng,
                                       cfg.shuffle_buffer > 1)
        stages: list[Any] = [source, functools.partial(
            tar_samples, max_bytes=cfg.max_member_bytes, handler=self.errors)]
        if cfg.shuffle_buffer > 1:
            stages.append(functools.partial(shuffle_buffer, size=cfg.shuffle_buffer, rng=rng))
        stages.append(wds.map(functools.partial(self._decode, rng=aug_rng),
                              handler=self.errors))
        pipe = wds.DataPipeline(*stages)
        return pipe.with_epoch(quota) if quota is not None else pipe

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pipe = self.pipeline(worker, workers)
        return iter(()) if pipe is None else iter(pipe)

    def _decode(self, raw: dict[str, Any], rng: np.random.Generator | None) -> dict:
        cfg = self.cfg
        key = raw["key"]
        fields = POSE_FIELDS + (("keypoint_3d",) if cfg.channels == 3 else ())
        t: Triplet = decode_triplet(key, raw["members"], fields)
        pose = to_ctvm(
            t.keypoint, t.keypoint_score, t.layout, frames=cfg.frames,
            max_persons=cfg.max_persons, channels=cfg.channels, keypoint_3d=t.keypoint_3d,
            dst_layout=cfg.layout, rng=rng,
        )
        dv, dt = self.dims
        return {
            "pose": pose,
            "video": _fit(t.video, dv), "has_video": t.video is not None,
            "text": _fit(t.text, dt), "has_text": t.text is not None,
            "index": self._global_index(raw["url"], raw["position"]), "key": key,
            "label": t.label,
        }


def _fit(vec: np.ndarray | None, dim: int) -> np.ndarray:
    out = np.zeros((dim,), np.float32)
    if vec is not None:
        if vec.shape[0] != dim:
            raise ValueError(f"embedding of size {vec.shape[0]} where {dim} was expected")
        out[:] = vec
    return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-sample dicts -> one batch dict of tensors and lists."""
    return {
        "pose": torch.from_numpy(np.stack([s["pose"] for s in samples])),
        "video": torch.from_numpy(np.stack([s["video"] for s in samples])),
        "has_video": torch.tensor([s["has_video"] for s in samples], dtype=torch.bool),
        "text": torch.from_numpy(np.stack([s["text"] for s in samples])),
        "has_text": torch.tensor([s["has_text"] for s in samples], dtype=torch.bool),
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),
        "key": [s["key"] for s in samples],
        "label": [s["label"] for s in samples],
    }


class TripletLoader:
    """Iterable of batches with ``set_epoch`` and, when the epoch length is set, ``len``.

    One DataLoader for the loader's life: with ``persistent_workers`` its workers are forked
    on the first ``iter`` and reused by every later epoch."""

    def __init__(self, stream: TripletStream, cfg: ReaderConfig):
        self.stream, self.cfg = stream, cfg
        self._loader: tud.DataLoader | None = None

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    @property
    def skipped(self) -> dict[str, int]:
        """Samples and shards skipped so far (over every worker)."""
        return self.stream.errors.counts

    def __len__(self) -> int:
        per_rank = self.stream.samples_per_rank()
        if per_rank is None:
            raise TypeError("the epoch length is unknown: set ReaderConfig.epoch_samples")
        # each worker batches its own samples: count batches worker by worker
        workers = max(self.cfg.num_workers, 1)
        b = self.cfg.batch_size
        counts = split_counts(per_rank, workers)
        return sum(c // b if self.cfg.drop_last else -(-c // b) for c in counts)

    def dataloader(self) -> tud.DataLoader:
        """The one DataLoader (built on first use)."""
        if self._loader is None:
            cfg = self.cfg
            workers = cfg.num_workers
            self._loader = tud.DataLoader(
                self.stream, batch_size=cfg.batch_size, num_workers=workers,
                collate_fn=collate, drop_last=cfg.drop_last,
                persistent_workers=bool(workers and cfg.persistent_workers),
                prefetch_factor=cfg.prefetch_factor if workers else None,
                multiprocessing_context="fork" if workers and os.name == "posix" else None,
                pin_memory=cfg.pin_memory and torch.cuda.is_available(),
            )
        return self._loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dataloader())


def make_loader(urls: str | Sequence[str], cfg: ReaderConfig | None = None) -> TripletLoader:
    """A loader of batch dicts over triplet shards (see module docstring)."""
    cfg = cfg or ReaderConfig()
    shard_list_ = expand_urls(urls)
    stream = TripletStream(shard_list_, cfg, sample_dims(shard_list_, cfg))
    return TripletLoader(stream, cfg)


class SkeletonDataset(tud.Dataset):
    """Map-style dataset over pyskl annotations (a list, or the pickle's dict plus ``split``).

    Items: {pose (C, T, V, M) float32 tensor, label (int, -1 when none), index, key}. The source
    layout is the annotation's ``layout`` or ``src_layout``.
    """

    def __init__(self, annotations: Any, cfg: ReaderConfig | None = None,
                 split: str | None = None, src_layout: str = "coco17"):
        self.cfg = cfg or ReaderConfig()
        anns = annotations
        if isinstance(annotations, dict):
            anns = annotations["annotations"]
            if split is not None:
                wanted = set(map(str, annotations["split"][split]))
                anns = [a for a in anns if str(a["frame_dir"]) in wanted]
        elif split is not None:
            raise ValueError("split needs the pickle's dict (with 'split'), not a bare list")
        self.annotations = list(anns)
        self.src_layout = src_layout
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.annotations)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        a = self.annotations[i]
        kp, score, kp3 = pyskl_arrays(a["keypoint"], a.get("keypoint_score"))
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i]) if self.cfg.augment else None
        pose = to_ctvm(
            kp, score, a.get("layout", self.src_layout),
            frames=self.cfg.frames, max_persons=self.cfg.max_persons,
            channels=self.cfg.channels, keypoint_3d=kp3, dst_layout=self.cfg.layout, rng=rng,
        )
        label = a.get("label")
        return {
            "pose": torch.from_numpy(pose),
            "label": int(label) if isinstance(label, (int, np.integer)) else -1,
            "index": i,
            "key": str(a["frame_dir"]),
        }
