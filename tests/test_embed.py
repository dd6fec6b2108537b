"""embed stage and open_clip encoder on the real clips of ../shared/data/videos."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tmor.errors import ErrorClass
from tmor.pipeline.stage import Sample

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
VIDEOS = DATA / "videos"
CLIPS = ["kinetics_tai_chi_1.mp4", "kinetics_arm_wrestling.mp4", "ucf101_archery.avi",
         "basketball_two_person.mp4"]


def _need_videos() -> None:
    if not all((VIDEOS / c).is_file() for c in CLIPS):
        pytest.skip(f"real test clips not found under {VIDEOS}")


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> str:
    from tmor.pipeline.vl.tiny import write_open_clip

    return write_open_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def encoder(spec):
    from tmor.pipeline.vl import load_encoder

    return load_encoder(spec, device="cpu")


@pytest.fixture(scope="module")
def decoded(encoder):
    from tmor.pipeline.vl.clips import decode_clip

    _need_videos()
    return [decode_clip(str(VIDEOS / c), encoder.num_frames, encoder.image_size) for c in CLIPS]


def test_frame_indices_follow_viclip_stride():
    from tmor.pipeline.vl import frame_indices

    assert frame_indices(300) == [0, 37, 74, 111, 148, 185, 222, 259]
    assert frame_indices(8) == list(range(8))
    with pytest.raises(ValueError):
        frame_indices(7)


def test_checkpoint_loads_through_spec(spec, encoder):
    from tmor.hashing import file_sha256
    from tmor.pipeline.vl.openclip_encoder import OpenClipEncoder

    ckpt = spec.rsplit(":", 1)[1]
    assert isinstance(encoder, OpenClipEncoder)
    assert encoder.sha256 == file_sha256(ckpt)
    assert encoder.model_id == "open_clip:tmor-tiny-clip:tmor-tiny-clip.pt"
    assert (encoder.dim, encoder.num_frames, encoder.image_size) == (32, 8, 224)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from tmor.errors import PluginUnavailable
    from tmor.pipeline.vl import load_encoder

    missing = tmp_path / "ViT-B-32-laion.pt"
    with pytest.raises(PluginUnavailable, match=str(missing)):
        load_encoder(f"open_clip:ViT-B-32:{missing}", device="cpu")
    with pytest.raises(PluginUnavailable, match="ViCLIP checkpoint not found"):
        load_encoder(f"viclip:{tmp_path / 'ViClip-InternVid-10M-FLT.pth'}", device="cpu")
    with pytest.raises(ValueError, match="unknown encoder"):
        load_encoder("clip4clip:x", device="cpu")


def test_embeddings_shape_dtype_norm(encoder, decoded):
    frames = np.stack([f for f, _ in decoded])
    assert frames.shape == (len(CLIPS), 8, 224, 224, 3) and frames.dtype == np.uint8
    v = encoder.encode_video(frames)
    t = encoder.encode_text(["a person doing tai chi.", "arm wrestling", "archery", ""])
    for e in (v, t):
        assert e.shape == (len(CLIPS), 32) and e.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # different clips give different vectors
    assert np.abs(v[0] - v[1]).max() > 1e-3


def test_same_clip_twice_same_vector(encoder):
    from tmor.pipeline.vl.clips import decode_clip

    _need_videos()
    src = VIDEOS / CLIPS[0]
    a, ia = decode_clip(str(src), 8, 224)
    b, ib = decode_clip(src.read_bytes(), 8, 224)  # path or bytes: same frames
    assert ia == ib
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(encoder.encode_video(a[None]), encoder.encode_video(b[None]))


def test_batching_does_not_change_result(encoder, decoded):
    frames = np.stack([f for f, _ in decoded])
    together = encoder.encode_video(frames)
    alone = np.concatenate([encoder.encode_video(frames[i:i + 1]) for i in range(len(frames))])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    texts = ["a person doing tai chi.", "two people arm wrestling", "archery", "basketball"]
    np.testing.assert_allclose(
        encoder.encode_text(texts),
        np.concatenate([encoder.encode_text([t]) for t in texts]), atol=1e-5)


def test_encoder_resizes_other_sizes(encoder, decoded):
    frames = decoded[0][0][None]
    small = frames[:, :, ::2, ::2]  # 112x112, resized back to 224 on the device
    v = encoder.encode_video(np.ascontiguousarray(small))
    assert v.shape == (1, 32)
    assert float(v[0] @ encoder.encode_video(frames)[0]) > 0.9


def _short_clip(tmp_path: Path) -> bytes:
    out = tmp_path / "short.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(VIDEOS / CLIPS[0]), "-frames:v", "4",
                    "-an", str(out)], check=True, timeout=60)
    return out.read_bytes()


def _sample(key: str, mp4: bytes, caption: str) -> Sample:
    return Sample(key=key, row={"key": key}, records={"caption": {"caption": caption}},
                  members={"fetch": {"mp4": mp4}})


def test_stage_embeds_and_records_bad_clips(encoder, tmp_path):
    from tmor.pipeline.embed import EmbedConfig, EmbedStage
    from tmor.pipeline.video import probe
    from tmor.pipeline.vl import frame_indices

    _need_videos()
    good = {f"{i:016x}": (VIDEOS / c).read_bytes() for i, c in enumerate(CLIPS[:3])}
    captions = {k: f"a person doing action {i}." for i, k in enumerate(good)}
    truncated = (VIDEOS / CLIPS[1]).read_bytes()[:5000]
    samples = [_sample(k, b, captions[k]) for k, b in good.items()]
    samples.insert(1, _sample("bad0000000000001", truncated, "x"))
    samples.insert(2, _sample("bad0000000000002", b"not a video at all", "x"))
    samples.append(_sample("bad0000000000003", _short_clip(tmp_path), "x"))
    samples.append(_sample("bad0000000000004", good[next(iter(good))], ""))

    stage = EmbedStage(EmbedConfig(batch_size=2, decode_threads=2), encoder=encoder)
    results = {r.key: r for r in stage.process(iter(samples))}
    assert set(results) == {s.key for s in samples}
    for k in [s.key for s in samples if s.key.startswith("bad")]:
        assert not results[k].ok and results[k].error.error_class == ErrorClass.BAD_INPUT, k
    assert "too short" in results["bad0000000000003"].error.message
    for k, mp4 in good.items():
        r = results[k]
        assert r.ok, r.error
        video = np.load(io.BytesIO(r.members["video.npy"]))
        text = np.load(io.BytesIO(r.members["text.npy"]))
        meta = json.loads(r.members["embed.json"])
        assert video.shape == text.shape == (32,)
        assert video.dtype == text.dtype == np.float16
        assert abs(float(np.linalg.norm(video.astype(np.float32))) - 1) < 2e-3
        assert meta["model_id"] == encoder.model_id and meta["model_sha256"] == encoder.sha256
        assert meta["frame_indices"] == frame_indices(probe(mp4).frames)
        assert r.record["frames_used"] == 8 and r.record["model_id"] == encoder.model_id
        # the quality score is the cosine of the two embeddings
        ref_t = encoder.encode_text([captions[k]])[0]
        np.testing.assert_allclose(text.astype(np.float32), ref_t, atol=2e-3)
        assert abs(r.record["video_text_sim"] - float(video.astype(np.float32) @ ref_t)) < 5e-3
