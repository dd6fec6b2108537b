"""The streaming reader of triplet shards, and a map-style dataset over pyskl annotations.

``make_loader(urls, cfg)`` yields batch dicts (docs/contracts.md):
pose (N, C, T, V, M) float32 normalized; video (N, Dv) / text (N, Dt) float32 with has_video /
has_text (N,) bool; index (N,) int64 global sample index from the shard index file (-1 when none);
key list[str]; label list[str | None].

Shards are split by node (torch.distributed rank) and by DataLoader worker; when there are fewer
shards than (ranks x workers), samples are split instead. Every tar goes through
:mod:`tmor.shards.tario`'s safety checks. With ``epoch_samples`` set, every rank yields exactly
``epoch_samples // world_size`` samples per epoch, cycling over its shards, so DDP ranks stay in
step.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import torch
import torch.utils.data as tud

from tmor import fsio
from tmor.shards.codec import Triplet, decode_triplet
from tmor.shards.tario import MAX_MEMBER_BYTES, iter_tar_samples
from tmor.skeleton.transforms import to_ctvm

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


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Brace patterns, lists, and folders of ``NNNNNN.tar`` -> a flat list of shard URLs."""
    from braceexpand import braceexpand

    from tmor.shards.index import shard_urls

    items = [urls] if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for item in items:
        for u in braceexpand(str(item)):
            if not u.startswith("pipe:") and not u.endswith(".tar"):
                fs, path = fsio.filesystem(u)
                if fs.isdir(path):
                    out.extend(shard_urls(u))
                    continue
            out.append(u)
    if not out:
        raise ValueError(f"no shards in {urls!r}")
    return out


def open_shard(url: str) -> tuple[IO[bytes], subprocess.Popen | None]:
    """A binary stream of one shard: ``pipe:CMD`` runs CMD (split into argv, no shell)."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(shlex.split(url[len("pipe:"):]), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        return proc.stdout, proc
    return fsio.open_url(url, "rb"), None


def iter_shard(url: str, max_bytes: int = MAX_MEMBER_BYTES) -> Iterator[tuple[str, dict]]:
    """(key, members) of one shard through the tario safety checks."""
    stream, proc = open_shard(url)
    try:
        yield from iter_tar_samples(stream, url, max_bytes)
    finally:
        stream.close()
        if proc is not None:
            rc = proc.wait()
            if rc not in (0, -13):  # -13: SIGPIPE when we stopped reading early
                raise OSError(f"{url}: command exited with status {rc}")


def index_location(url: str) -> str | None:
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
    for _, members in iter_shard(urls[0], cfg.max_member_bytes):
        t = decode_triplet("probe", members)
        found_v = found_v or (t.video.shape[0] if t.video is not None else 0)
        found_t = found_t or (t.text.shape[0] if t.text is not None else 0)
        if found_v and found_t:
            break
    return (dv if dv is not None else found_v), (dt if dt is not None else found_t)


class TripletStream(tud.IterableDataset):
    """An iterable dataset of per-sample dicts; pickled to DataLoader workers."""

    def __init__(self, urls: list[str], cfg: ReaderConfig, dims: tuple[int, int]):
        self.urls, self.cfg, self.dims = urls, cfg, dims
        self.rank, self.world = rank_world()
        self.epoch = 0
        self._index: dict[str, dict[str, int]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def samples_per_rank(self) -> int | None:
        e = self.cfg.epoch_samples
        return None if e is None else e // self.world

    def _global_index(self, url: str, key: str) -> int:
        where = self.cfg.index_url or index_location(url)
        if where is None:
            return -1
        if where not in self._index:
            from tmor.shards.index import INDEX_NAME, read_index

            folder = where[: -len(INDEX_NAME) - 1] if where.endswith(INDEX_NAME) else where
            self._index[where] = read_index(folder)
        return self._index[where].get(key, -1)

    def _assignment(self, worker: int, workers: int) -> tuple[list[str], int, int]:
        """(my shards, sample stride, sample offset) for this rank and worker."""
        slots, slot = self.world * workers, self.rank * workers + worker
        if len(self.urls) >= slots:
            return self.urls[slot::slots], 1, 0
        return list(self.urls), slots, slot

    def _raw(self, shards: list[str], stride: int, offset: int, rng: np.random.Generator,
             forever: bool) -> Iterator[tuple[str, str, dict]]:
        while True:
            order = list(shards)
            if self.cfg.shuffle_buffer > 1:
                rng.shuffle(order)
            n = 0
            for url in order:
                for i, (key, members) in enumerate(iter_shard(url, self.cfg.max_member_bytes)):
                    if i % stride == offset:
                        n += 1
                        yield url, key, members
            if not forever or n == 0:
                return

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = tud.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shards, stride, offset = self._assignment(worker, workers)
        seed = [self.cfg.seed, self.epoch, self.rank, worker]
        rng = np.random.default_rng(seed)
        aug_rng = np.random.default_rng([*seed, 1]) if self.cfg.augment else None
        per_rank = self.samples_per_rank()
        quota = None if per_rank is None else split_counts(per_rank, workers)[worker]
        if quota == 0:
            return
        raw = self._raw(shards, stride, offset, rng, forever=quota is not None)
        n = 0
        for url, key, members in _shuffle(raw, self.cfg.shuffle_buffer, rng):
            yield self._decode(url, key, members, aug_rng)
            n += 1
            if quota is not None and n >= quota:
                return

    def _decode(self, url: str, key: str, members: dict, rng: np.random.Generator | None) -> dict:
        cfg = self.cfg
        fields = POSE_FIELDS + (("keypoint_3d",) if cfg.channels == 3 else ())
        t: Triplet = decode_triplet(key, members, fields)
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
            "index": self._global_index(url, key), "key": key, "label": t.label,
        }


def _fit(vec: np.ndarray | None, dim: int) -> np.ndarray:
    out = np.zeros((dim,), np.float32)
    if vec is not None:
        if vec.shape[0] != dim:
            raise ValueError(f"embedding of size {vec.shape[0]} where {dim} was expected")
        out[:] = vec
    return out


def _shuffle(it: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    if size <= 1:
        yield from it
        return
    buf: list = []
    for x in it:
        if len(buf) < size:
            buf.append(x)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], x = x, buf[j]
        yield x
    rng.shuffle(buf)
    yield from buf


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
    """Iterable of batches with ``set_epoch`` and, when the epoch length is set, ``len``."""

    def __init__(self, stream: TripletStream, cfg: ReaderConfig):
        self.stream, self.cfg = stream, cfg

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def __len__(self) -> int:
        per_rank = self.stream.samples_per_rank()
        if per_rank is None:
            raise TypeError("the epoch length is unknown: set ReaderConfig.epoch_samples")
        # each worker batches its own samples: count batches worker by worker
        workers = max(self.cfg.num_workers, 1)
        b = self.cfg.batch_size
        counts = split_counts(per_rank, workers)
        return sum(c // b if self.cfg.drop_last else -(-c // b) for c in counts)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cfg = self.cfg
        loader = tud.DataLoader(
            self.stream, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
            collate_fn=collate, drop_last=cfg.drop_last,
            persistent_workers=False, prefetch_factor=4 if cfg.num_workers else None,
            multiprocessing_context="fork" if cfg.num_workers and os.name == "posix" else None,
        )
        return iter(loader)


def make_loader(urls: str | Sequence[str], cfg: ReaderConfig | None = None) -> TripletLoader:
    """A loader of batch dicts over triplet shards (see module docstring)."""
    cfg = cfg or ReaderConfig()
    shard_list = expand_urls(urls)
    stream = TripletStream(shard_list, cfg, sample_dims(shard_list, cfg))
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
        kp = np.asarray(a["keypoint"], np.float32)
        score = a.get("keypoint_score")
        kp3 = kp if kp.shape[-1] == 3 else None
        if score is None:
            score = (np.abs(kp).sum(-1) > 0).astype(np.float32)
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i]) if self.cfg.augment else None
        pose = to_ctvm(
            kp[..., :2], np.asarray(score, np.float32), a.get("layout", self.src_layout),
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
