"""Small random-weight models saved like real checkpoints, for tests and CPU benchmarks.

They go through exactly the loading path of released weights (``load_encoder``).
"""

from __future__ import annotations

import json
from pathlib import Path

#: a tiny open_clip CLIP: 224x224 input, patch 32, 2 vision layers, 1 text layer, 32-d embedding
TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_open_clip(folder: str | Path, name: str = "tmor-tiny-clip",
                    config: dict | None = None, seed: int = 0) -> str:
    """Write ``<name>.json`` (model config) and ``<name>.pt`` (random weights); return the spec
    ``open_clip:<folder>/<name>.json:<folder>/<name>.pt``. ``config`` None: :data:`TINY_OPEN_CLIP`;
    a registered architecture name (e.g. "ViT-B-32") uses open_clip's own config."""
    import open_clip
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = TINY_OPEN_CLIP if config is None else config
    cfg_path = folder / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    ckpt = folder / f"{name}.pt"
    torch.save(model.state_dict(), ckpt)
    return f"open_clip:{cfg_path}:{ckpt}"


def open_clip_config(arch: str) -> dict:
    """The config dict open_clip registers for ``arch`` (to write a same-sized random model)."""
    import open_clip

    return open_clip.get_model_config(arch)
