"""The ``embed`` stage: frozen video-language embeddings of each clip and of its caption.

Each clip is read in a worker thread: 8 frames at the ViCLIP stride, each reached by a seek to
the keyframe fetch placed on it (clips without such keyframes are decoded from the start; the
same frames either way), resized to the model's size in the decoder; clips are batched on the
device (fp16 autocast on CUDA). Output per key: ``video.npy`` and ``text.npy`` (D,) float16,
``embed.json`` {model_id, model_sha256, frame_indices}; ledger columns model_id, video_text_sim,
frames_used, frames_decoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from tmor.config import rules, torch_device
from tmor.errors import ErrorClass, SampleError
from tmor.pipeline.stage import Result, Sample, Stage
from tmor.pipeline.vl import encoder_spec
from tmor.pipeline.vl.clips import clip_source, decode_clip, prefetch
from tmor.skeleton.npz import npy_bytes

DEFAULT_MODEL = "open_clip:ViT-B-32:openai"


@rules(model=encoder_spec, device=torch_device, batch_size=">= 1", decode_threads=">= 1",
       prefetch=">= 1")
@dataclass
class EmbedConfig:
    """Options of ``tmor-data embed`` (each is also a YAML field)."""

    model: str = DEFAULT_MODEL  # open_clip:ARCH:PRETRAINED | viclip:PATH
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 32  # clips per forward
    decode_threads: int = 4  # clips decoded concurrently
    prefetch: int = 64  # clips decoded ahead of the model
    seek: bool = True  # seek to the 8 frames where the clip's keyframes allow (else decode)


def sample_caption(sample: Sample) -> str:
    """The caption stage's text for this key (bad_input when empty)."""
    text = sample.records.get("caption", {}).get("caption")
    if not isinstance(text, str) or not text.strip():
        raise SampleError(ErrorClass.BAD_INPUT, "no caption for this key")
    return text


class EmbedStage(Stage):
    """Video and caption embeddings with one frozen video-language encoder."""

    name: ClassVar[str] = "embed"
    needs: ClassVar[dict[str, tuple[str, ...]]] = {"fetch": ("mp4",), "caption": ()}
    writes_tar: ClassVar[bool] = True

    def __init__(self, config: EmbedConfig | None = None, encoder: Any = None):
        self.config = config or EmbedConfig()
        self.encoder = encoder  # an already loaded VideoTextEncoder (tests, benchmarks)

    def setup(self) -> None:
        if self.encoder is None:
            from tmor.pipeline.vl import load_encoder

            self.encoder = load_encoder(self.config.model, self.config.device)

    def teardown(self) -> None:
        self.encoder = None

    def card(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": asdict(self.config)}
        if self.encoder is not None:
            out.update(model_id=self.encoder.model_id, model_sha256=self.encoder.sha256,
                       dim=self.encoder.dim)
        return out

    def _decode(self, sample: Sample) -> tuple[np.ndarray, list[int], str, int]:
        from tmor.pipeline.video import ReadStats

        text = sample_caption(sample)
        stats = ReadStats()
        frames, idx = decode_clip(clip_source(sample), self.encoder.num_frames,
                                  self.encoder.image_size, stats=stats, seek=self.config.seek)
        return frames, idx, text, stats.decoded

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        self.setup()
        cfg = self.config
        batch: list[tuple[Sample, tuple[np.ndarray, list[int], str, int]]] = []
        decoded = prefetch(samples, self._decode, cfg.decode_threads, cfg.prefetch)
        for sample, got in decoded:
            if isinstance(got, BaseException):
                yield Result(sample.key, error=_classify(got))
                continue
            batch.append((sample, got))
            if len(batch) >= cfg.batch_size:
                yield from self._encode(batch)
                batch = []
        if batch:
            yield from self._encode(batch)

    def _encode(self, batch: list[tuple[Sample, tuple[np.ndarray, list[int], str, int]]]
                ) -> Iterator[Result]:
        enc = self.encoder
        video = enc.encode_video(np.stack([got[0] for _, got in batch]))
        text = enc.encode_text([got[2] for _, got in batch])
        sims = (video * text).sum(1)
        for i, (sample, (_, idx, _, decoded)) in enumerate(batch):
            meta = {"model_id": enc.model_id, "model_sha256": enc.sha256,
                    "frame_indices": [int(j) for j in idx]}
            yield Result(
                sample.key,
                members={
                    "video.npy": npy_bytes(video[i].astype(np.float16)),
                    "text.npy": npy_bytes(text[i].astype(np.float16)),
                    "embed.json": json.dumps(meta).encode(),
                },
                record={"model_id": enc.model_id, "video_text_sim": float(sims[i]),
                        "frames_used": len(idx), "frames_decoded": int(decoded)},
            )


def _classify(e: BaseException) -> SampleError:
    if isinstance(e, SampleError):
        return e
    return SampleError(ErrorClass.TRANSIENT, f"{type(e).__name__}: {e}")
