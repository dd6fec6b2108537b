"""Motion embeddings of a whole corpus with an encoder: the re-clustering pass of pre-training and
``tmor-train embed`` (a parquet of key, index, label, embedding)."""

from __future__ import annotations

import io

import numpy as np
import torch

from tmor import fsio
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

    from tmor.shards.reader import make_loader
    from tmor.train.encoder import load_encoder

    encoder = load_encoder(ckpt, device)  # the same input settings as Encoder.embed
    s = encoder.spec
    cfg = PretrainConfig(shards=shards, frames=s.frames, layout=s.layout, channels=s.channels,
                         max_persons=s.max_persons, embed_batch_size=batch_size,
                         num_workers=num_workers)
    idx, keys, labels, emb = embed_pass(encoder.module,
                                        make_loader(shards, reader_config(cfg, False)),
                                        encoder.device)
    frame = pd.DataFrame({"key": keys, "index": idx, "label": labels,
                          "embedding": list(emb.astype(np.float32))})
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    fsio.write_bytes(out, buf.getvalue())
    return len(frame)
