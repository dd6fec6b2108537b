"""Zero-shot classification: class names through prompt templates into the embed stage's text
encoder (the same frozen video-language model as pre-training), projected by the checkpoint's
text head, cosine against the skeleton's projected motion embedding (the motion-text pair "mt").

``with_video``: the clip's frozen video embedding (triplet shards carry it) is compared with the
raw text embeddings in the video-language model's own space, and the two cosine similarities are
averaged per class: motion+visual zero-shot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from tmor.config import known_layout, rules, torch_device
from tmor.devices import resolve_device
from tmor.train.data import ClassificationDataset, LoadedData, load_split

TEMPLATES = ("a person {}.", "a video of a person {}.", "a person is {}.", "{}")


@rules(batch_size=">= 1", frames=">= 1", channels="2 | 3", max_persons=">= 1",
       layout=known_layout, data_layout=known_layout, device=torch_device)
@dataclass
class ZeroShotConfig:
    """Options of ``tmor-train zero-shot``."""

    ckpt: str = ""
    classes: str = ""  # a text file: one class name a line, in label-id order
    data: str = ""
    split: str | None = "test"
    out: str | None = None  # writes results.json and scores.npy here when set
    text_encoder: str | None = None  # an embed-stage spec; default: the checkpoint's
    templates: list[str] = field(default_factory=lambda: list(TEMPLATES))
    with_video: bool = False
    batch_size: int = 64
    frames: int | None = None
    channels: int | None = None
    max_persons: int | None = None
    layout: str | None = None
    data_layout: str = "coco17"
    device: str = "auto"


def read_class_names(path: str) -> list[str]:
    """One class name a line (blank lines and ``#`` comments skipped)."""
    from tmor import fsio

    lines = fsio.read_bytes(path).decode("utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def class_text_embeddings(encoder: Any, names: list[str], templates: list[str]) -> np.ndarray:
    """(K, Dt) float32: per class, the mean of its L2-normalized prompt embeddings, renormalized
    (CLIP's prompt ensembling)."""
    prompts = [t.format(n) for n in names for t in templates]
    e = np.asarray(encoder.encode_text(prompts), np.float32)
    e /= np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    e = e.reshape(len(names), len(templates), -1).mean(1)
    return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def heads_from_state(state: dict) -> Any:
    """Rebuild :class:`tmor.model.heads.ProjectionHeads` from its state dict's shapes."""
    from tmor.model.heads import ProjectionHeads

    pairs = tuple(p for p in ("mm", "mv", "mt") if f"motion.{p}.0.weight" in state)
    any_pair = pairs[0]
    hidden, embed = state[f"motion.{any_pair}.0.weight"].shape
    proj = state[f"motion.{any_pair}.3.weight"].shape[0]
    video = state["target.mv.0.weight"].shape[1] if "target.mv.0.weight" in state else 512
    text = state["target.mt.0.weight"].shape[1] if "target.mt.0.weight" in state else 512
    heads = ProjectionHeads(embed, video, text, proj, hidden, pairs)
    heads.load_state_dict(state)
    return heads.eval()


def text_encoder_spec(cfg: ZeroShotConfig, ckpt: dict) -> str:
    """The embed-stage spec: the option, else the one the checkpoint records."""
    if cfg.text_encoder:
        return cfg.text_encoder
    tc = ckpt.get("train_config") or {}
    for k in ("text_encoder", "embed_model", "encoder_spec", "vl_model"):
        for src in (ckpt, tc):
            if isinstance(src.get(k), str):
                return src[k]
    raise ValueError("the checkpoint names no text encoder: pass --text-encoder SPEC "
                     "(the embed stage's model, e.g. open_clip:ViT-B-32:openai)")


def zero_shot_scores(encoder: Any, heads: Any, x: np.ndarray, text: np.ndarray,
                     video: np.ndarray | None = None, batch: int = 64,
                     device: Any = "cpu") -> np.ndarray:
    """(N, K) cosine scores of (N, C, T, V, M) skeletons against (K, Dt) class text embeddings;
    with (N, Dv) video embeddings, averaged with the video-text cosine."""
    import torch

    encoder.eval()
    heads.eval()
    with torch.no_grad():
        t = heads.project_target("mt", torch.from_numpy(text).to(device))
        out = []
        for i in range(0, len(x), batch):
            z = encoder(torch.from_numpy(x[i:i + batch]).to(device))
            out.append((heads.project_motion("mt", z) @ t.T).float().cpu().numpy())
    s = np.concatenate(out)
    if video is not None:
        v = video / np.maximum(np.linalg.norm(video, axis=-1, keepdims=True), 1e-12)
        s = (s + v @ text.T) / 2
    return s


def label_ids(data: LoadedData, names: list[str]) -> np.ndarray:
    """Sample labels as indices into ``names`` (by name, case-insensitive; -1 when absent)."""
    idx = {n.lower(): i for i, n in enumerate(names)}
    out = []
    for s in data.samples:
        name = s.label_name
        if name is None and 0 <= s.label < len(data.classes):
            name = data.classes[s.label]
        i = idx.get(str(name).lower(), -1) if name is not None else -1
        if i < 0 and 0 <= s.label < len(names) and str(name) == str(s.label):
            i = s.label  # an unnamed integer label: the line of the names file
        out.append(i)
    return np.asarray(out, np.int64)


def run_zero_shot(cfg: ZeroShotConfig, data: LoadedData | None = None, text_encoder: Any = None,
                  log: Any = print) -> dict:
    """Evaluate zero-shot classification; returns (and writes, with ``out``) the results."""
    from tmor import fsio
    from tmor.model.checkpoint import load_checkpoint
    from tmor.model.unik import UNIK
    from tmor.train import metrics as M
    from tmor.train.classify import resolve_spec

    device = torch.device(resolve_device(cfg.device))
    ckpt = load_checkpoint(cfg.ckpt)
    if not ckpt.get("heads"):
        raise ValueError(f"{cfg.ckpt}: no projection heads (needs a pre-training checkpoint)")
    heads = heads_from_state(ckpt["heads"]).to(device)
    if "mt" not in heads.pairs:
        raise ValueError(f"{cfg.ckpt}: no motion-text head (pairs {heads.pairs})")
    encoder = UNIK.from_config(ckpt["model_config"])
    encoder.load_state_dict(ckpt["encoder"])
    encoder.to(device).eval()
    names = read_class_names(cfg.classes)
    if text_encoder is None:
        from tmor.pipeline.vl import load_encoder

        text_encoder = load_encoder(text_encoder_spec(cfg, ckpt), device=str(device))
    text = class_text_embeddings(text_encoder, names, list(cfg.templates))
    data = data or load_split(cfg.data, cfg.split, cfg.data_layout)
    spec = resolve_spec(cfg, ckpt)
    x = np.stack([ClassificationDataset(data.samples, spec)[i][0]
                  for i in range(len(data.samples))])
    video = None
    if cfg.with_video:
        missing = [s.name for s in data.samples if s.video is None]
        if missing:
            raise ValueError(f"--with-video: {len(missing)} samples have no video embedding "
                             f"(e.g. {missing[:3]}); use triplet shards made by the embed stage")
        video = np.stack([s.video for s in data.samples]).astype(np.float32)
    scores = zero_shot_scores(encoder, heads, x, text, video, cfg.batch_size, device)
    y = label_ids(data, names)
    known = y >= 0
    if not known.any():
        raise ValueError("no sample's label is among the class names")
    s, yk = scores[known], y[known]
    results = {
        "task": "zero_shot", "ckpt": cfg.ckpt, "classes": names, "with_video": cfg.with_video,
        "num_samples": int(known.sum()), "unlabeled": int((~known).sum()),
        "top1": M.top_k_accuracy(s, yk, 1), "top5": M.top_k_accuracy(s, yk, min(5, len(names))),
        "mean_class_accuracy": M.mean_class_accuracy(s, yk), "chance": 1.0 / len(names),
        "per_class": M.per_class_table(s, yk, names),
        "config": asdict(cfg),
    }
    log(f"zero-shot top1 {results['top1']:.4f} top5 {results['top5']:.4f} "
        f"mean_class {results['mean_class_accuracy']:.4f} over {results['num_samples']} samples")
    if cfg.out:
        import io

        fsio.makedirs(cfg.out)
        buf = io.BytesIO()
        np.save(buf, scores.astype(np.float32))
        fsio.write_bytes(fsio.join(cfg.out, "scores.npy"), buf.getvalue())
        fsio.write_bytes(fsio.join(cfg.out, "results.json"),
                         json.dumps(results, indent=1, default=float).encode())
    return results
