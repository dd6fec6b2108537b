"""A checkpoint's encoder as researchers use it: :func:`load_encoder` -> :class:`Encoder`, whose
``embed`` turns pyskl arrays into motion embeddings exactly as ``tmor-train embed`` does (the
reader's transform :func:`tmor.skeleton.transforms.to_ctvm` with the checkpoint's input
settings, then the UNIK forward)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tmor.devices import resolve_device
from tmor.model.checkpoint import load_checkpoint
from tmor.model.unik import UNIK
from tmor.skeleton.layouts import check_layout
from tmor.skeleton.transforms import pyskl_arrays, to_ctvm
from tmor.train.config import PretrainConfig
from tmor.train.data import InputSpec


def checkpoint_spec(ckpt: dict[str, Any]) -> InputSpec:
    """The input settings a checkpoint's encoder was trained with: a transfer checkpoint's
    ``input_spec``, else a pre-train checkpoint's config (frames, layout), with C and M from the
    model itself."""
    mc = ckpt["model_config"]
    saved = ckpt.get("input_spec") or ckpt.get("train_config") or {}
    base = PretrainConfig()
    return InputSpec(
        frames=int(saved.get("frames") or base.frames),
        channels=int(mc["in_channels"]), max_persons=int(mc["num_persons"]),
        layout=saved.get("layout", base.layout))


class Encoder:
    """A UNIK encoder (``module``, eval mode, on ``device``) with its input settings (``spec``:
    frames T, channels C, persons M, joint layout)."""

    def __init__(self, module: UNIK, spec: InputSpec, device: torch.device) -> None:
        self.module, self.spec, self.device = module.eval().to(device), spec, device

    @property
    def embed_dim(self) -> int:
        return self.module.embed_dim

    def prepare(self, keypoint: Any, keypoint_score: Any = None,
                layout: str | None = None) -> np.ndarray:
        """Model inputs (N, C, T, V, M) float32 of one sample, a batch or a list of samples (see
        :meth:`embed`): layout converted, T frames resampled, M persons kept, normalized."""
        s = self.spec
        out = []
        for kp, score, kp3, src in self._samples(keypoint, keypoint_score, layout):
            x = to_ctvm(kp, score, src, frames=s.frames, max_persons=s.max_persons,
                        channels=s.channels, keypoint_3d=kp3, dst_layout=s.layout)
            want = self.module.config.num_joints
            if x.shape[2] != want:
                raise ValueError(f"keypoints of layout {src!r} give {x.shape[2]} joints, the "
                                 f"encoder takes {want} (layout {s.layout!r})")
            out.append(x)
        return np.stack(out) if out else np.zeros((0, s.channels, s.frames, 0, s.max_persons),
                                                  np.float32)

    @torch.inference_mode()
    def embed(self, keypoint: Any, keypoint_score: Any = None, layout: str | None = None,
              batch_size: int = 256) -> np.ndarray:
        """Motion embeddings (N, D) float32 (D = 256 for the reference UNIK).

        ``keypoint``: one pyskl sample (M, T, V, C) or a batch (N, M, T, V, C), numpy or torch,
        with ``keypoint_score`` (M, T, V) / (N, M, T, V) (default: 1 where a joint is
        non-zero); C=3 is 3D. Or a sample dict (a pyskl annotation, a :func:`read_triplets`
        record: keypoint, keypoint_score, keypoint_3d, layout), or a list of arrays / dicts
        (samples of different lengths). ``layout``: the joint layout of the keypoints; default
        the sample's own (a dict's ``layout``), else the checkpoint's. Samples are converted to
        the checkpoint's layout, resampled to its T frames and normalized as the training
        reader does; the forward runs on the encoder's device in batches, without gradients.
        """
        x = self.prepare(keypoint, keypoint_score, layout)
        parts = [self.module(torch.from_numpy(x[i:i + batch_size]).to(self.device)).float().cpu()
                 for i in range(0, len(x), batch_size)]
        return (torch.cat(parts).numpy() if parts else np.zeros((0, self.embed_dim), np.float32))

    def _samples(self, keypoint: Any, score: Any, layout: str | None
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]]:
        """(x, y keypoints, score, keypoint_3d, source layout) of every sample given."""
        if isinstance(keypoint, Mapping):
            return [self._sample_of_dict(keypoint, layout)]
        if isinstance(keypoint, Sequence) and not isinstance(keypoint, (str, bytes)):
            scores = [None] * len(keypoint) if score is None else list(score)
            return [s for k, sc in zip(keypoint, scores, strict=True)
                    for s in self._samples(k, sc, layout)]
        kp = _numpy(keypoint)
        sc = None if score is None else _numpy(score)
        if kp.ndim == 5:
            return [self._one(kp[i], None if sc is None else sc[i], layout)
                    for i in range(kp.shape[0])]
        if kp.ndim != 4:
            raise ValueError(f"keypoint of shape {kp.shape}: expected (M, T, V, C) or "
                             "(N, M, T, V, C)")
        return [self._one(kp, sc, layout)]

    def _sample_of_dict(self, sample: Mapping, layout: str | None):
        if "meta" in sample:  # a read_triplets record: taken as the training reader takes it
            kp, kp3 = _numpy(sample["keypoint"]), sample.get("keypoint_3d")
            return (kp, _numpy(sample["keypoint_score"]), None if kp3 is None else _numpy(kp3),
                    self._layout(layout or sample["layout"], kp))
        return self._one(_numpy(sample["keypoint"]), sample.get("keypoint_score"),
                         layout or sample.get("layout"))

    def _one(self, kp: np.ndarray, score: Any, layout: str | None):
        """A pyskl sample: C=3 is 3D, a missing score 1 where a joint is non-zero."""
        src = self._layout(layout, kp)
        kp2, sc, kp3 = pyskl_arrays(kp, None if score is None else _numpy(score))
        return kp2, sc, kp3, src

    def _layout(self, layout: str | None, kp: np.ndarray) -> str:
        """The keypoints' layout (given, else the checkpoint's), checked against their V."""
        src = layout or self.spec.layout
        if src is None:
            raise ValueError("the checkpoint keeps the data's own layout: say which layout the "
                             "keypoints are in (layout=...)")
        check_layout(src, int(kp.shape[2]), f"keypoint {kp.shape}")
        return src


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, np.float32)


def load_encoder(path: str, device: str = "cpu") -> Encoder:
    """The encoder of a pre-train (``tmor-train pretrain``) or transfer (``finetune``,
    ``linear-probe``, ``detect``) checkpoint, loaded safely (no code runs from the file), on
    ``device`` (``cpu``, ``cuda``, ``cuda:1``, ``auto``)."""
    dev = torch.device(resolve_device(device))
    ckpt = load_checkpoint(path, map_location=dev)
    module = UNIK.from_config(ckpt["model_config"])
    module.load_state_dict(ckpt["encoder"])
    return Encoder(module, checkpoint_spec(ckpt), dev)
