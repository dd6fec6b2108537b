"""ViCLIP: a small config whose random weights are written in the released checkpoint layout
(``{"model": state_dict}`` with InternVid's parameter names), loaded through ``load_encoder``,
and checked against a functional re-statement of the released forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "videos" / "kinetics_tai_chi_1.mp4"

W, LAYERS, PATCH, RES, T, OUT, CTX, VOCAB = 64, 2, 32, 224, 8, 32, 32, 49408


def _block(sd: dict, prefix: str, w: int, g: torch.Generator) -> None:
    def r(*shape, s=0.05):
        return torch.randn(*shape, generator=g) * s

    sd[prefix + "attn.in_proj_weight"] = r(3 * w, w)
    sd[prefix + "attn.in_proj_bias"] = r(3 * w)
    sd[prefix + "attn.out_proj.weight"] = r(w, w)
    sd[prefix + "attn.out_proj.bias"] = r(w)
    sd[prefix + "ln_1.weight"] = 1 + r(w)
    sd[prefix + "ln_1.bias"] = r(w)
    sd[prefix + "mlp.c_fc.weight"] = r(4 * w, w)
    sd[prefix + "mlp.c_fc.bias"] = r(4 * w)
    sd[prefix + "mlp.c_proj.weight"] = r(w, 4 * w)
    sd[prefix + "mlp.c_proj.bias"] = r(w)
    sd[prefix + "ln_2.weight"] = 1 + r(w)
    sd[prefix + "ln_2.bias"] = r(w)


def released_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the parameter names of the released ViCLIP checkpoints."""
    g = torch.Generator().manual_seed(seed)
    v, t = "vision_encoder.", "text_encoder."
    grid = RES // PATCH
    sd = {
        v + "class_embedding": torch.randn(W, generator=g) * 0.1,
        v + "positional_embedding": torch.randn(grid * grid + 1, W, generator=g) * 0.1,
        v + "temporal_positional_embedding": torch.randn(1, T, W, generator=g) * 0.5,
        v + "conv1.weight": torch.randn(W, 3, 1, PATCH, PATCH, generator=g) * 0.02,
        v + "ln_pre.weight": torch.ones(W), v + "ln_pre.bias": torch.zeros(W),
        v + "ln_post.weight": torch.ones(W), v + "ln_post.bias": torch.zeros(W),
        v + "proj": torch.randn(W, OUT, generator=g) * 0.1,
        t + "token_embedding.weight": torch.randn(VOCAB, W, generator=g) * 0.02,
        t + "positional_embedding": torch.randn(CTX, W, generator=g) * 0.01,
        t + "ln_final.weight": torch.ones(W), t + "ln_final.bias": torch.zeros(W),
        t + "text_projection": torch.randn(W, OUT, generator=g) * 0.1,
        "temp": torch.tensor(0.01),
    }
    for i in range(LAYERS):
        _block(sd, f"{v}transformer.resblocks.{i}.", W, g)
        _block(sd, f"{t}transformer.resblocks.{i}.", W, g)
    return sd


def _ref_block(x, sd, p, heads, mask=None):
    """Sequence-first (L, B, C) residual block as the released code computes it."""
    c = x.shape[-1]
    h = F.layer_norm(x, (c,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
    a, _ = F.multi_head_attention_forward(
        h, h, h, c, heads, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"], None, None,
        False, 0.0, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"],
        training=False, need_weights=False, attn_mask=mask)
    x = x + a
    h = F.layer_norm(x, (c,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
    h = F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])
    h = h * torch.sigmoid(1.702 * h)
    return x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])


def ref_video(sd, video):
    """(B, 3, T, H, W) -> (B, D): frames (b t) -> tokens (b n) t + temporal -> b (n t)."""
    v = "vision_encoder."
    x = F.conv3d(video, sd[v + "conv1.weight"], stride=(1, PATCH, PATCH))
    b, c, t, gh, gw = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(b * t, gh * gw, c)
    cls = sd[v + "class_embedding"] + torch.zeros(b * t, 1, c)
    x = torch.cat([cls, x], 1) + sd[v + "positional_embedding"]
    cls, x = x[:b, :1], x[:, 1:]
    n = x.shape[1]
    x = x.reshape(b, t, n, c).permute(0, 2, 1, 3).reshape(b * n, t, c)
    x = x + sd[v + "temporal_positional_embedding"]
    x = x.reshape(b, n * t, c)
    x = torch.cat([cls, x], 1)
    x = F.layer_norm(x, (c,), sd[v + "ln_pre.weight"], sd[v + "ln_pre.bias"]).permute(1, 0, 2)
    for i in range(LAYERS):
        x = _ref_block(x, sd, f"{v}transformer.resblocks.{i}.", W // 64 or 1)
    x = F.layer_norm(x, (c,), sd[v + "ln_post.weight"], sd[v + "ln_post.bias"])
    return x[0] @ sd[v + "proj"]


def ref_text(sd, tokens):
    t = "text_encoder."
    x = sd[t + "token_embedding.weight"][tokens] + sd[t + "positional_embedding"]
    mask = torch.full((CTX, CTX), float("-inf")).triu_(1)
    x = x.permute(1, 0, 2)
    for i in range(LAYERS):
        x = _ref_block(x, sd, f"{t}transformer.resblocks.{i}.", W // 64 or 1, mask)
    x = x.permute(1, 0, 2)
    x = F.layer_norm(x, (W,), sd[t + "ln_final.weight"], sd[t + "ln_final.bias"])
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ sd[t + "text_projection"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    sd = released_state_dict()
    path = tmp_path_factory.mktemp("viclip") / "ViCLIP-tiny_InternVid-FLT.pth"
    torch.save({"model": sd, "epoch": 9}, path)
    return path, sd


@pytest.fixture(scope="module")
def encoder(released):
    from tmor.pipeline.vl import load_encoder

    return load_encoder(f"viclip:{released[0]}", device="cpu")


@pytest.fixture(scope="module")
def frames():
    from tmor.pipeline.vl.clips import decode_clip

    if not CLIP.is_file():
        pytest.skip(f"real test clip not found: {CLIP}")
    return decode_clip(str(CLIP), 8, 224)[0]


def test_released_layout_loads_every_tensor(released, encoder):
    from tmor.hashing import file_sha256

    path, sd = released
    own = encoder.model.state_dict()
    assert set(own) == set(sd)
    for k, v in sd.items():
        torch.testing.assert_close(own[k], v, rtol=0, atol=0)
    c = encoder.model.config
    assert (c.vision_layers, c.text_layers, c.num_frames, c.image_size, c.context_length) == (
        LAYERS, LAYERS, T, RES, CTX)
    assert encoder.dim == OUT and encoder.sha256 == file_sha256(path)
    assert encoder.model_id == f"viclip:ViT-w{W}-{PATCH}:{path.name}"


def test_bare_and_prefixed_state_dicts_load(released, tmp_path):
    from tmor.pipeline.vl.viclip import load_viclip

    _, sd = released
    p = tmp_path / "bare.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, p)
    torch.testing.assert_close(load_viclip(p).state_dict()["vision_encoder.proj"],
                               sd["vision_encoder.proj"])
    broken = {k: v for k, v in sd.items() if "text_projection" not in k}
    torch.save({"model": broken}, p)
    with pytest.raises(ValueError, match="text_projection"):
        load_viclip(p)


def test_video_matches_released_forward(released, encoder, frames):
    from tmor.pipeline.vl import IMAGENET_MEAN, IMAGENET_STD

    _, sd = released
    out = encoder.encode_video(frames[None])
    assert out.shape == (1, OUT) and out.dtype == np.float32
    assert abs(np.linalg.norm(out) - 1) < 1e-5
    x = torch.from_numpy(frames).float().div(255)
    x = (x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)  # (T, H, W, 3)
    ref = F.normalize(ref_video(sd, x.permute(3, 0, 1, 2)[None]), dim=-1).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_text_matches_released_forward(released, encoder):
    from open_clip.tokenizer import SimpleTokenizer

    _, sd = released
    texts = ["a person doing tai chi.", "two people " + "hugging " * 40]  # second: > 32 tokens
    out = encoder.encode_text(texts)
    tokens = SimpleTokenizer(context_length=CTX)(texts)
    assert tokens.shape == (2, CTX) and int(tokens[1, -1]) == 49407  # truncated, ends in EOT
    ref = F.normalize(ref_text(sd, tokens), dim=-1).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_frames_share_one_attention(released, frames, tmp_path):
    """With the temporal embedding zeroed, the joint attention makes the output invariant to the
    order of frames; with it, order matters; and every frame influences the class token."""
    from tmor.pipeline.vl import load_encoder

    _, sd = released
    enc = load_encoder(f"viclip:{released[0]}", device="cpu")
    perm = frames[[3, 1, 7, 0, 5, 2, 6, 4]]
    assert np.abs(enc.encode_video(frames[None]) - enc.encode_video(perm[None])).max() > 1e-4
    flat = dict(sd, **{"vision_encoder.temporal_positional_embedding": torch.zeros(1, T, W)})
    p = tmp_path / "flat.pth"
    torch.save({"model": flat}, p)
    enc0 = load_encoder(f"viclip:{p}", device="cpu")
    a, b = enc0.encode_video(frames[None]), enc0.encode_video(perm[None])
    np.testing.assert_allclose(a, b, atol=1e-5)
    changed = frames.copy()
    changed[5] = 255 - changed[5]
    assert np.abs(enc0.encode_video(changed[None]) - a).max() > 1e-4


def test_batching_and_wrong_frame_count(encoder, frames):
    two = np.stack([frames, frames[::-1]])
    np.testing.assert_allclose(
        encoder.encode_video(two),
        np.concatenate([encoder.encode_video(two[:1]), encoder.encode_video(two[1:])]), atol=1e-5)
    with pytest.raises(ValueError, match="takes 8 frames"):
        encoder.encode_video(frames[None, :4])


def test_full_size_configs_have_released_shapes():
    from tmor.pipeline.vl.viclip import ViClipConfig, config_from_state_dict

    for cfg in (ViClipConfig(), ViClipConfig.b16()):
        vw, p, tw = cfg.vision_width, cfg.patch_size, cfg.text_width
        shapes = {
            "vision_encoder.conv1.weight": torch.empty(vw, 3, 1, p, p),
            "vision_encoder.positional_embedding": torch.empty((224 // p) ** 2 + 1, vw),
            "vision_encoder.temporal_positional_embedding": torch.empty(1, 8, vw),
            "vision_encoder.proj": torch.empty(vw, cfg.vision_out),
            "text_encoder.token_embedding.weight": torch.empty(49408, tw),
            "text_encoder.positional_embedding": torch.empty(32, tw),
            "text_encoder.text_projection": torch.empty(tw, cfg.text_out),
            **{f"vision_encoder.transformer.resblocks.{i}.ln_1.weight": torch.empty(vw)
               for i in range(cfg.vision_layers)},
            **{f"text_encoder.transformer.resblocks.{i}.ln_1.weight": torch.empty(tw)
               for i in range(cfg.text_layers)},
        }
        assert config_from_state_dict(shapes) == cfg
    assert ViClipConfig().name == "ViT-L-14" and ViClipConfig.b16().name == "ViT-B-16"
