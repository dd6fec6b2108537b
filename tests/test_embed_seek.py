"""embed reads its 8 frames by seeking to the keyframes fetch places on them; clips without them
(imports, old corpora) are decoded from the start. Same frames, same embeddings either way."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _fetched import fetch_encode

from tmor.pipeline.stage import Sample
from tmor.skeleton.npz import load_npy

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
VIDEOS = DATA / "videos"
CLIPS = ["kinetics_tai_chi_1.mp4", "basketball_two_person.mp4", "ucf101_archery.avi",
         "two_person_handover_portrait.mp4"]  # fmt: skip

pytestmark = pytest.mark.skipif(not all((VIDEOS / c).is_file() for c in CLIPS),
                                reason=f"real test clips not found under {VIDEOS}")


def _fetch(src: Path, dst: Path, seconds: float, keyframes: bool) -> bytes:
    """``src``'s first seconds through fetch's own encode command."""
    return fetch_encode(src, dst, seconds, seek_keyframes=keyframes).read_bytes()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("fetched")
    out = {}
    for c in CLIPS:
        stem = Path(c).stem
        out[stem] = _fetch(VIDEOS / c, tmp / f"{stem}.mp4", 3.0, True)
        out[stem + "_nokf"] = _fetch(VIDEOS / c, tmp / f"{stem}_nokf.mp4", 3.0, False)
    out["import_avi"] = (VIDEOS / "ucf101_archery.avi").read_bytes()  # not fetched: as imported
    return out


def test_seek_reads_the_same_frames_decoding_at_most_twice_what_it_uses(clips):
    from tmor.pipeline.video import ReadStats
    from tmor.pipeline.vl.clips import decode_clip

    for key, data in clips.items():
        seek, full = ReadStats(), ReadStats()
        a, idx = decode_clip(data, 8, 224, stats=seek, seek=True)
        b, idx2 = decode_clip(data, 8, 224, stats=full, seek=False)
        assert idx == idx2 and np.array_equal(a, b), key
        assert full.decoded == max(idx) + 1, key
        if key.endswith("_nokf") or key == "import_avi":
            assert seek.decoded <= full.decoded, key  # never worse than decoding
        else:
            assert seek.path == "seek" and seek.decoded <= 16, (key, seek)
        print(f"{key}: frames {idx[-1] + 1}+, decoded seek {seek.decoded} ({seek.path}) "
              f"vs full {full.decoded}")


def test_seek_embeddings_equal_full_decode_embeddings(clips, tmp_path):
    from tmor.pipeline.embed import EmbedConfig, EmbedStage
    from tmor.pipeline.vl import load_encoder
    from tmor.pipeline.vl.tiny import write_open_clip

    encoder = load_encoder(write_open_clip(tmp_path), device="cpu")
    samples = [Sample(key, {"key": key}, {"caption": {"caption": f"a person, {key}"}},
                      {"fetch": {"mp4": data}}) for key, data in clips.items()]

    def run(seek: bool) -> dict:
        stage = EmbedStage(EmbedConfig(batch_size=4, decode_threads=2, seek=seek), encoder)
        return {r.key: r for r in stage.process(iter(samples))}

    seek, full = run(True), run(False)
    for key in clips:
        assert seek[key].ok and full[key].ok, key
        a = load_npy(seek[key].members["video.npy"])
        b = load_npy(full[key].members["video.npy"])
        assert a.dtype == np.float16 and np.allclose(a, b, atol=1e-3), key
        assert seek[key].record["frames_decoded"] <= full[key].record["frames_decoded"]
    fetched = [k for k in clips if not k.endswith("_nokf") and k != "import_avi"]
    assert all(seek[k].record["frames_decoded"] <= 16 for k in fetched)
