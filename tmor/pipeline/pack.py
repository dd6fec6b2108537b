"""The ``pack`` stage: join fetch, pose, caption and embed outputs by key into triplet shards.

Writes ``triplets/NNNNNN.tar`` (same shard index as the plan) with ``<key>.pose.npz``,
``<key>.video.npy``, ``<key>.text.npy``, ``<key>.txt``, ``<key>.json``. A sample that a filter
removes is committed as a ledger row only (``filtered`` = the filter's name, flag
``filtered:<name>``, no members). :func:`finish_pack` then writes ``triplets/index.parquet`` and
the ``triplets`` section of ``corpus.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from tmor.config import rules
from tmor.errors import ErrorClass, SampleError
from tmor.pipeline.stage import Result, Sample, Stage

FILTERS = ("min_frames_with_person", "min_mean_score", "min_video_text_sim", "min_seconds")


@rules(min_frames_with_person=">= 0", min_mean_score="[0, 1]", min_video_text_sim="[-1, 1]",
       min_seconds=">= 0")
@dataclass
class PackConfig:
    """Options of ``tmor-data pack``; a filter set to None is off."""

    min_frames_with_person: int | None = 8
    min_mean_score: float | None = 0.2  # mean score of the joints of present persons
    min_video_text_sim: float | None = None  # off by default: the scale depends on the model
    min_seconds: float | None = 0.5
    require_embed: bool = True  # False: skeleton-only corpus (no embed stage; has_video false)
    caption_template: str = "a person {label}."  # skeleton-only mode, when no caption exists
    compress: bool = False  # True: deflate pose.npz (smaller; the reader then inflates it)


def _json(record: dict[str, Any], name: str) -> Any:
    value = record.get(name)
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def pose_quality(keypoint_score: np.ndarray) -> dict[str, Any]:
    """frames, persons, frames_with_person and mean_score (over joints of present persons)."""
    sc = np.asarray(keypoint_score, np.float32)
    present = (sc > 0).any(axis=-1)  # (M, T): person p visible in frame t
    mean = float(sc[present].mean()) if present.any() else 0.0
    return {
        "frames": int(sc.shape[1]) if sc.ndim == 3 else 0,
        "persons": int(sc.shape[0]) if sc.ndim == 3 else 0,
        "frames_with_person": int(present.any(axis=0).sum()) if sc.ndim == 3 else 0,
        "mean_score": mean,
    }


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


class PackStage(Stage):
    """Join stage outputs into triplet samples, applying the quality filters."""

    name: ClassVar[str] = "triplets"
    needs: ClassVar[dict[str, tuple[str, ...]]] = {
        "fetch": ("json",),
        "pose": ("pose.npz",),
        "caption": (),
        "embed": ("video.npy", "text.npy", "embed.json"),
    }

    def __init__(self, config: PackConfig | None = None):
        self.config = config or PackConfig()
        if not self.config.require_embed:  # instance attribute: the runner reads stage.needs
            self.needs = {"fetch": ("json",), "pose": ("pose.npz",)}

    def card(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "filters": self.filter_settings()}

    def filter_settings(self) -> dict[str, Any]:
        return {f: getattr(self.config, f) for f in FILTERS}

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        for s in samples:
            try:
                yield self.pack_one(s)
            except SampleError as e:
                yield Result(s.key, error=e)

    def pack_one(self, s: Sample) -> Result:
        """One sample -> a triplet Result, or a filtered ledger-only Result."""
        from tmor.shards.codec import Triplet, decode_pose, encode_triplet, load_npy
        from tmor.skeleton.npz import keypoint_3d_in_layout

        cfg = self.config
        try:
            pose = decode_pose(s.members["pose"]["pose.npz"])
        except (KeyError, ValueError, OSError) as e:
            raise SampleError(ErrorClass.BAD_INPUT, f"unreadable pose.npz: {e}") from e
        fetch_meta: dict[str, Any] = {}
        if "json" in s.members.get("fetch", {}):
            fetch_meta = json.loads(s.members["fetch"]["json"].decode("utf-8"))
        quality = pose_quality(pose["keypoint_score"])
        fps = _num(pose.get("fps")) or _num(fetch_meta.get("fps")) or 30.0
        seconds = quality["frames"] / fps if fps else 0.0
        row = s.row
        label = row.get("label") if isinstance(row.get("label"), str) else None

        video = text = None
        embed_meta: dict[str, Any] = {}
        sim = None
        if "embed" in s.members:
            em = s.members["embed"]
            try:
                video = load_npy(em["video.npy"]) if "video.npy" in em else None
                text = load_npy(em["text.npy"]) if "text.npy" in em else None
                embed_meta = json.loads(em["embed.json"]) if "embed.json" in em else {}
            except (ValueError, OSError) as e:
                raise SampleError(ErrorClass.BAD_INPUT, f"unreadable embedding: {e}") from e
            sim = _num(s.records.get("embed", {}).get("video_text_sim"))
            if sim is None and video is not None and text is not None:
                sim = cosine(video, text)

        cap_rec = s.records.get("caption", {})
        caption = cap_rec.get("caption") if isinstance(cap_rec.get("caption"), str) else None
        caption_source = cap_rec.get("caption_source") if caption else None
        if caption is None:
            given = row.get("caption") if isinstance(row.get("caption"), str) else None
            if given:
                caption, caption_source = given, "caption"
            elif label:
                caption, caption_source = cfg.caption_template.format(label=label), "label"
            else:
                caption, caption_source = "", None

        record: dict[str, Any] = {
            **quality, "fps": fps, "clip_seconds": seconds, "video_text_sim": sim, "label": label,
            "has_video": video is not None, "filtered": None,
        }
        why = self.filtered(quality, seconds, sim)
        if why is not None:
            record["filtered"] = why
            return Result(s.key, members={}, record=record, flags=[f"filtered:{why}"])

        meta = {
            "key": s.key, "source": row.get("source"), "start": _num(row.get("start")),
            "end": _num(row.get("end")), "label": label, "caption_source": caption_source,
            "caption_topk": _json(cap_rec, "caption_topk"), "fps": fps, "seconds": seconds,
            **quality, "video_text_sim": sim,
            "img_shape": np.asarray(pose["img_shape"]).tolist() if "img_shape" in pose else None,
            "pose_backend": str(pose["backend"]) if "backend" in pose else None,
            "pose_model": str(pose["model"]) if "model" in pose else None,
            "pose_model_sha256": str(pose["model_sha256"]) if "model_sha256" in pose else None,
            "pose_lifter": str(pose["lifter"]) if "lifter" in pose else None,
            "pose_lifter_sha256": str(pose["lifter_sha256"]) if "lifter" in pose else None,
            "embed_model": embed_meta.get("model_id"),
            "embed_model_sha256": embed_meta.get("model_sha256"),
            "video_width": fetch_meta.get("width"), "video_height": fetch_meta.get("height"),
        }
        triplet = Triplet(
            key=s.key, keypoint=pose["keypoint"], keypoint_score=pose["keypoint_score"],
            layout=pose["layout"], fps=fps, keypoint_3d=keypoint_3d_in_layout(pose),
            video=video, text=text, caption=caption, meta=meta,
        )
        members = encode_triplet(triplet)
        if cfg.compress:
            from tmor.shards.codec import encode_pose

            members["pose.npz"] = encode_pose(
                triplet.keypoint, triplet.keypoint_score, triplet.layout, fps,
                triplet.keypoint_3d, compress=True,
            )
        return Result(s.key, members=members, record=record)

    def filtered(self, quality: dict[str, Any], seconds: float, sim: float | None) -> str | None:
        """The name of the first filter that removes the sample, or None."""
        cfg = self.config
        if cfg.min_frames_with_person is not None and (
            quality["frames_with_person"] < cfg.min_frames_with_person
        ):
            return "min_frames_with_person"
        if cfg.min_mean_score is not None and quality["mean_score"] < cfg.min_mean_score:
            return "min_mean_score"
        if cfg.min_video_text_sim is not None and sim is not None and (
            sim < cfg.min_video_text_sim
        ):
            return "min_video_text_sim"
        if cfg.min_seconds is not None and seconds < cfg.min_seconds:
            return "min_seconds"
        return None


def pack_summary(root: str) -> dict[str, Any]:
    """Counts from the triplets ledgers: ok, failed, filtered per filter, hours kept."""
    from tmor.manifests.ledger import read_stage_ledgers

    df = read_stage_ledgers(root, PackStage.name)
    if df.empty:
        return {"samples": 0, "failed": 0, "filtered": {}, "hours": 0.0}
    ok = df["status"] == "ok"
    filt = df["filtered"] if "filtered" in df else None
    kept = ok & (filt.isna() if filt is not None else True)
    removed = filt[ok & filt.notna()].value_counts().to_dict() if filt is not None else {}
    seconds = df.loc[kept, "clip_seconds"].astype(float).sum() if "clip_seconds" in df else 0.0
    return {
        "samples": int(kept.sum()), "failed": int((~ok).sum()),
        "filtered": {str(k): int(v) for k, v in removed.items()},
        "hours": float(seconds) / 3600.0,
    }


def finish_pack(root: str, stage: PackStage | None = None) -> dict[str, Any]:
    """After the pack stage: write ``triplets/index.parquet`` and the card's ``triplets``
    section (counts, hours, filters, models, embedding sizes); returns that section."""
    from tmor import fsio
    from tmor.shards.card import update_corpus_card
    from tmor.shards.index import write_index

    stage = stage or PackStage()
    index = write_index(fsio.join(root, PackStage.name))
    section = {**stage.card(), **pack_summary(root), "index": index}
    section.update(_models(root))
    update_corpus_card(root, PackStage.name, section)
    return section


def _models(root: str) -> dict[str, Any]:
    """Model ids / hashes and embedding sizes from the first sample of the first shard."""
    from tmor import fsio
    from tmor.shards.codec import decode_triplet
    from tmor.shards.index import shard_urls
    from tmor.shards.tario import iter_tar_samples

    for url in shard_urls(fsio.join(root, PackStage.name)):
        with fsio.open_url(url, "rb") as f:
            for key, members in iter_tar_samples(f, url):
                t = decode_triplet(key, members)
                return {
                    "layout": t.layout,
                    "video_dim": int(t.video.shape[0]) if t.video is not None else 0,
                    "text_dim": int(t.text.shape[0]) if t.text is not None else 0,
                    "models": {k: t.meta.get(k) for k in (
                        "pose_backend", "pose_model", "pose_model_sha256", "embed_model",
                        "embed_model_sha256",
                    )},
                }
    return {}
