"""The ``caption`` stage: one text per clip, from the first source that has one.

Order: the input list's ``caption`` column; ``title`` / ``description`` in the row's meta JSON;
the label through a prompt template ("a person {label}."); for unlabeled clips, zero-shot naming
with a video-language model against an action vocabulary (top-k names kept with their cosine
similarities). Ledger only: caption, caption_source, caption_topk (JSON [[name, score], ...]).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from tmor.config import rules, torch_device
from tmor.errors import ErrorClass, SampleError
from tmor.pipeline.stage import Result, Sample, Stage
from tmor.pipeline.vl import encoder_spec
from tmor.pipeline.vl.clips import clip_source, decode_clip, prefetch

META_SOURCES = ("title", "description")


@rules(model=encoder_spec, device=torch_device, top_k=">= 1", batch_size=">= 1",
       decode_threads=">= 1")
@dataclass
class CaptionConfig:
    """Options of ``tmor-data caption`` (each is also a YAML field)."""

    model: str = "open_clip:ViT-B-32:openai"  # zero-shot naming model (loaded only when needed)
    device: str = "auto"
    templates: list[str] = field(default_factory=lambda: ["a person {label}."])
    use_meta: bool = True  # take title / description from the row's meta JSON
    zero_shot: bool = True  # False: unlabeled clips without text fail as bad_input
    vocabulary: str | None = None  # path / URL of names, one a line; None: the packaged list
    top_k: int = 5
    batch_size: int = 32
    decode_threads: int = 4


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    s = str(value).strip()
    return s or None


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("meta")
    if isinstance(raw, dict):
        return raw
    if not _text(raw):
        return {}
    try:
        out = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def template_for(key: str, templates: Sequence[str]) -> str:
    """A template chosen by the key (stable across runs; varied across clips)."""
    if not templates:
        raise ValueError("no caption templates")
    try:
        i = int(key, 16) % len(templates)
    except ValueError:
        i = sum(key.encode()) % len(templates)
    return templates[i]


def given_caption(row: dict[str, Any], templates: Sequence[str], key: str,
                  use_meta: bool = True) -> tuple[str, str] | None:
    """(caption, source) from the row's own text or label, or None when it has neither."""
    if cap := _text(row.get("caption")):
        return cap, "caption"
    if use_meta:
        meta = _meta(row)
        for name in META_SOURCES:
            if t := _text(meta.get(name)):
                return t, name
    if label := _text(row.get("label")):
        return template_for(key, templates).format(label=label), "label"
    return None


def zero_shot_topk(query: np.ndarray, names: Sequence[str], name_emb: np.ndarray,
                   k: int) -> list[list[tuple[str, float]]]:
    """For each row of ``query`` (N, D), the ``k`` names of highest cosine similarity, best first.

    Both inputs are L2-normalized, so the dot product is the cosine; ties keep vocabulary order.
    """
    sims = np.asarray(query, np.float32) @ np.asarray(name_emb, np.float32).T
    k = min(k, len(names))
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(names[j], float(row[j])) for j in order])
    return out


class CaptionStage(Stage):
    """Texts for clips; zero-shot action naming for clips with no text and no label."""

    name: ClassVar[str] = "caption"
    needs: ClassVar[dict[str, tuple[str, ...]]] = {"fetch": ("mp4",)}
    writes_tar: ClassVar[bool] = False

    def __init__(self, config: CaptionConfig | None = None, encoder: Any = None):
        self.config = config or CaptionConfig()
        self.encoder = encoder
        self._names: list[str] | None = None
        self._name_emb: np.ndarray | None = None

    def card(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": asdict(self.config)}
        if self.encoder is not None:
            out.update(model_id=self.encoder.model_id, model_sha256=self.encoder.sha256)
        return out

    def teardown(self) -> None:
        self.encoder = None
        self._name_emb = None

    def vocabulary(self) -> tuple[list[str], np.ndarray]:
        """Names and their prompt embeddings (N, D), computed once per worker."""
        if self.encoder is None:
            from tmor.pipeline.vl import load_encoder

            self.encoder = load_encoder(self.config.model, self.config.device)
        if self._names is None or self._name_emb is None:
            from tmor.data import load_vocabulary

            names = load_vocabulary(self.config.vocabulary)
            prompts = [self.config.templates[0].format(label=n) for n in names]
            embs = [self.encoder.encode_text(prompts[i:i + 256])
                    for i in range(0, len(prompts), 256)]
            self._names, self._name_emb = names, np.concatenate(embs)
        return self._names, self._name_emb

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        cfg = self.config
        pending: list[Sample] = []
        for s in samples:
            given = given_caption(s.row, cfg.templates, s.key, cfg.use_meta)
            if given is not None:
                yield Result(s.key, record={"caption": given[0], "caption_source": given[1],
                                            "caption_topk": None})
            elif not cfg.zero_shot:
                yield Result(s.key, error=SampleError(
                    ErrorClass.BAD_INPUT, "no caption, title, description or label"))
            else:
                pending.append(s)
        if pending:
            yield from self._zero_shot(pending)

    def _zero_shot(self, samples: list[Sample]) -> Iterator[Result]:
        cfg = self.config
        names, name_emb = self.vocabulary()
        enc = self.encoder

        def decode(s: Sample) -> np.ndarray:
            return decode_clip(clip_source(s), enc.num_frames, enc.image_size)[0]

        batch: list[tuple[Sample, np.ndarray]] = []
        for s, got in prefetch(samples, decode, cfg.decode_threads, 2 * cfg.batch_size):
            if isinstance(got, BaseException):
                err = got if isinstance(got, SampleError) else SampleError(
                    ErrorClass.TRANSIENT, f"{type(got).__name__}: {got}")
                yield Result(s.key, error=err)
                continue
            batch.append((s, got))
            if len(batch) >= cfg.batch_size:
                yield from self._name(batch, names, name_emb)
                batch = []
        if batch:
            yield from self._name(batch, names, name_emb)

    def _name(self, batch: list[tuple[Sample, np.ndarray]], names: list[str],
              name_emb: np.ndarray) -> Iterator[Result]:
        video = self.encoder.encode_video(np.stack([f for _, f in batch]))
        tops = zero_shot_topk(video, names, name_emb, self.config.top_k)
        for (s, _), top in zip(batch, tops, strict=True):
            caption = self.config.templates[0].format(label=top[0][0])
            yield Result(s.key, record={
                "caption": caption, "caption_source": "zero_shot",
                "caption_topk": json.dumps([[n, round(v, 6)] for n, v in top]),
            })


def name_videos(paths: Sequence[str], config: CaptionConfig | None = None,
                encoder: Any = None) -> list[dict[str, Any]]:
    """Zero-shot naming of local video files (no corpus): one dict per path with ``caption``
    and ``caption_topk`` ([name, score] pairs), or ``error`` for an unreadable clip."""
    stage = CaptionStage(config or CaptionConfig(), encoder=encoder)
    samples = []
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            samples.append(Sample(f"{i:016x}", {"key": f"{i:016x}"},
                                  members={"fetch": {"mp4": f.read()}}))
    by_key = {r.key: r for r in stage._zero_shot(samples)}
    out = []
    for s, p in zip(samples, paths, strict=True):
        r = by_key[s.key]
        if r.ok:
            out.append({"path": str(p), "caption": r.record["caption"],
                        "caption_topk": json.loads(r.record["caption_topk"])})
        else:
            out.append({"path": str(p), "error": str(r.error)})
    return out
