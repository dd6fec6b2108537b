"""Motion embeddings of a whole corpus with an encoder: the re-clustering pass of pre-training and
``tmor-train embed`` (a parquet of key, index, label, embedding)."""

from __future__ import annotations

import io

import numpy as np
import torch

from tmor import fsio
from tmor.devices import resolve_device
from tmor.model.unik import UNIK
from tmor.train.config import PretrainConfig
from tmor.train.corpus import reader_config


@torch.no_grad()
def embed_pass(encoder: UNIK, loader, device: torch.device, amp_dtype=None
               ) -> tuple[np.ndarray, list[str], list, np.ndarray]:
    """Embeddings of every sample this rank reads: (index, keys, labels, (n, D) float32)."""
    was = encoder.training
    encoder.eval()
    idx, keys, labels, embs = [], [], [], []
    for b in loader:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            z = encoder(b["pose"].to(device))
        embs.append(z.float().cpu().numpy())
        idx.append(b["index"].numpy())
        keys += list(b["key"])
        labels += list(b["label"])
    encoder.train(was)
    d = encoder.embed_dim
    return (np.concatenate(idx) if idx else np.zeros(0, np.int64), keys, labels,
            np.concatenate(embs) if embs else np.zeros((0, d), np.float32))


def embed_to_parquet(ckpt: str, shards: str, out: str, batch_size: int = 256,
                     num_workers: int = 2, device: str = "auto") -> int:
    """Motion embeddings of every sample of ``shards`` with the checkpoint's encoder -> parquet
    (key, index, label, embedding list<float32>); returns the number of rows."""
    import pandas as pd

    from tmor.model.checkpoint import load_checkpoint, load_encoder
    from tmor.shards.reader import make_loader

    dev = torch.device(resolve_device(device))
    ck_cfg = load_checkpoint(ckpt).get("train_config") or {}
    base = PretrainConfig()
    cfg = PretrainConfig(**{k: ck_cfg.get(k, getattr(base, k)) for k in
                            ("frames", "layout", "channels", "max_persons")})
    cfg.shards, cfg.embed_batch_size, cfg.num_workers = shards, batch_size, num_workers
    encoder = load_encoder(ckpt).to(dev)
    idx, keys, labels, emb = embed_pass(encoder, make_loader(shards, reader_config(cfg, False)),
                                        dev)
    frame = pd.DataFrame({"key": keys, "index": idx, "label": labels,
                          "embedding": list(emb.astype(np.float32))})
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    fsio.write_bytes(out, buf.getvalue())
    return len(frame)
