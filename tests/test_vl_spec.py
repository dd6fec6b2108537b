"""Encoder specs take every model name open_clip takes, schema names included."""

from __future__ import annotations

import json

import pytest

from tmor.errors import PluginUnavailable


def test_parse_spec_keeps_schema_names_whole():
    from tmor.pipeline.vl.openclip_encoder import parse_spec

    assert parse_spec("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K") == (
        "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None)
    assert parse_spec("local-dir:/models/clip") == ("local-dir:/models/clip", None)
    assert parse_spec("ViT-B-32:openai") == ("ViT-B-32", "openai")
    assert parse_spec("/cfg/m.json:/w/m.pt") == ("/cfg/m.json", "/w/m.pt")
    for bad in ("ViT-B-32", "hf-hub:", ":openai"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_local_dir_name_loads_through_load_encoder(tmp_path):
    """A folder in open_clip's hub layout (open_clip_config.json + weights) loads by name."""
    import open_clip
    import torch

    from tmor.pipeline.vl import load_encoder
    from tmor.pipeline.vl.tiny import TINY_OPEN_CLIP, write_open_clip

    write_open_clip(tmp_path / "cfg")  # registers the tiny config
    folder = tmp_path / "tiny-hub"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP}))
    torch.manual_seed(1)
    model = open_clip.create_model("tmor-tiny-clip", pretrained=None)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    enc = load_encoder(f"open_clip:local-dir:{folder}", device="cpu")
    assert enc.model_id == f"open_clip:local-dir:{folder}" and enc.dim == 32
    import numpy as np

    v = enc.encode_video(np.zeros((1, 8, 224, 224, 3), np.uint8))
    assert v.shape == (1, 32) and abs(float((v * v).sum()) - 1) < 1e-4


def test_hf_hub_name_reaches_open_clip(monkeypatch, tmp_path):
    """Offline, an hf-hub name fails inside open_clip's hub download, said as unavailable (the
    spec itself is accepted: no 'expected ARCH:PRETRAINED' error)."""
    from tmor.pipeline.vl import load_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(PluginUnavailable, match="hf-hub:tmor-test/no-such-model"):
        load_encoder("open_clip:hf-hub:tmor-test/no-such-model", device="cpu")
