"""tmor.pipeline.video on the real clips of ../shared/data/videos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tmor.pipeline import video as V

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
VIDEOS = DATA / "videos"

pytestmark = pytest.mark.skipif(
    not VIDEOS.is_dir(), reason=f"real test clips not found at {VIDEOS}"
)


def test_probe_matches_csv():
    info = V.probe(VIDEOS / "kinetics_tai_chi_1.mp4")
    assert (info.width, info.height, info.frames) == (340, 256, 300)
    assert abs(info.fps - 29.97) < 0.01 and abs(info.duration - 10.01) < 0.02
    avi = V.probe(VIDEOS / "ucf101_archery.avi")  # mpeg4/xvid in avi
    assert (avi.width, avi.height, avi.frames, avi.fps) == (320, 240, 131, 25.0)


def test_iter_frames_sampling_and_resize_from_bytes():
    data = (VIDEOS / "ntu_two_person_hug.mp4").read_bytes()  # 72 frames at 28.05 fps, 1920x1080
    frames = list(V.iter_frames(data, fps=7, size=(160, 96), queue_size=2))
    idx = [i for i, _ in frames]
    assert idx == V.sample_indices(72, V.probe(data).fps, 7)
    assert idx[0] == 0 and all(3 <= b - a <= 5 for a, b in zip(idx, idx[1:], strict=False))
    assert 17 <= len(idx) <= 19
    rgb = frames[0][1]
    assert rgb.shape == (96, 160, 3) and rgb.dtype == np.uint8 and rgb.std() > 5
    all_idx = [i for i, _ in V.iter_frames(data)]
    assert all_idx == list(range(72))


def test_iter_frames_stops_thread_when_abandoned():
    import threading

    it = V.iter_frames(VIDEOS / "kinetics_tai_chi_2.mp4", queue_size=1)
    next(it)
    it.close()
    assert not any(t.name == "tmor-decode" and t.is_alive() for t in threading.enumerate())


def test_read_frames_decodes_selected_indices():
    path = VIDEOS / "ucf101_apply_eye_makeup.avi"
    out = V.read_frames(path, [40, 0, 40, 163], size=(64, 48))
    assert out.shape == (4, 48, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0], out[2]) and not np.array_equal(out[0], out[1])
    streamed = {i: f for i, f in V.iter_frames(path, size=(64, 48)) if i in (0, 40)}
    assert np.array_equal(out[1], streamed[0]) and np.array_equal(out[0], streamed[40])
    clamped = V.read_frames(path, [500], size=(64, 48))
    assert np.array_equal(clamped[0], out[3])
    with pytest.raises(V.VideoDecodeError):
        V.read_frames(path, [500], clamp=False)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"this is a text file, not a video\n" * 20,
        "truncated_mp4",
        "truncated_avi",
    ],
)
def test_bad_inputs_raise_video_decode_error(payload):
    if payload == "truncated_mp4":
        data = (VIDEOS / "kinetics_tai_chi_1.mp4").read_bytes()
        payload = data[: len(data) // 2]
    elif payload == "truncated_avi":
        data = (VIDEOS / "ucf101_archery.avi").read_bytes()
        payload = data[: len(data) // 2]
    with pytest.raises(V.VideoDecodeError):
        for _ in V.iter_frames(payload):
            pass
