"""The device pose path (engine ``tensor``) gives the skeletons of the previous path (engine
``host``: decoder-side resize, host padding per shape, ultralytics' per-image NMS) on the same
pixels, on the shared clips as fetch leaves them; its default device-side resize gives the same
pixels where a clip is at the input size and a bilinear resize's skeletons elsewhere; and the
same bytes however the decode workers interleave the clips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _fetched import fetch_encode

from tmor.pipeline.pose.stage import PoseConfig, PoseStage
from tmor.pipeline.stage import Sample
from tmor.skeleton.npz import decode_pose

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
YOLO = DATA / "models" / "yolo11n-pose.pt"
CLIPS = ["basketball_two_person.mp4", "ntu_two_person_hug.mp4", "kinetics_tai_chi_1.mp4",
         "two_person_handover_portrait.mp4", "ucf101_archery.avi"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not (YOLO.is_file() and all((DATA / "videos" / c).is_file() for c in CLIPS)),
    reason=f"real clips / YOLO weights not in {DATA}")


def _fetched(src: Path, dst: Path) -> bytes:
    return fetch_encode(src, dst, 1.5).read_bytes()


def _run(samples: list[Sample], engine: str, resize: str = "device", **kw) -> dict[str, dict]:
    cfg = PoseConfig(model=str(YOLO), device="cpu", fps=4.0, imgsz=640, max_persons=2,
                     backend_options={"engine": engine, "resize": resize}, **kw)
    stage = PoseStage(cfg)
    stage.setup()
    try:
        out = {r.key: r for r in stage.process(iter(samples))}
    finally:
        stage.teardown()
    assert all(r.ok for r in out.values()), {k: r.error for k, r in out.items() if not r.ok}
    return {k: decode_pose(r.members["pose.npz"]) for k, r in out.items()}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fetched")
    samples = [Sample(Path(c).stem, {}, {}, {"fetch": {"mp4": _fetched(
        DATA / "videos" / c, tmp / (Path(c).stem + ".mp4")), "json": b"{}"}}) for c in CLIPS]
    host = _run(samples, "host", batch_size=8, decode_workers=1)
    device = _run(samples, "tensor", "decoder", batch_size=16, decode_workers=2)
    resized = _run(samples, "tensor", batch_size=16, decode_workers=2)
    return host, device, resized


def test_device_path_gives_todays_skeletons(both):
    host, device, _ = both
    assert host.keys() == device.keys()
    for key in host:
        a, b = host[key], device[key]
        assert np.array_equal(a["frame_index"], b["frame_index"]), key
        assert a["keypoint"].shape == b["keypoint"].shape, key
        present = (np.abs(a["box"]).sum(-1) > 0) & (np.abs(b["box"]).sum(-1) > 0)  # (M, T)
        assert present.sum() >= 0.9 * (np.abs(a["box"]).sum(-1) > 0).sum(), key
        seen = present[..., None] & (a["keypoint_score"] > 0.3)  # matched joints
        d = np.linalg.norm(a["keypoint"] - b["keypoint"], axis=-1)[seen]
        ds = np.abs(a["keypoint_score"] - b["keypoint_score"])[seen]
        print(f"{key}: {seen.sum()} joints, max |dxy| {d.max():.3f} px, max |dscore| "
              f"{ds.max():.4f}")
        assert d.max() <= 1.0 and ds.max() <= 0.02, key


def test_device_results_do_not_depend_on_decode_interleaving(both, tmp_path):
    """Other decode parallelism (other frames share each batch): byte-identical pose.npz."""
    from tmor.skeleton.npz import npz_bytes

    device = both[2]
    samples = [Sample(Path(c).stem, {}, {}, {"fetch": {"mp4": _fetched(
        DATA / "videos" / c, tmp_path / (Path(c).stem + ".mp4")), "json": b"{}"}})
        for c in CLIPS[:3]]
    again = _run(samples, "tensor", batch_size=16, decode_workers=3, clips_in_flight=2)
    for key, p in again.items():
        assert npz_bytes(p) == npz_bytes(device[key]), key


def test_device_resize_same_pixels_at_input_size_bilinear_elsewhere(both):
    """Clips already at the input size (640x360, 360x640) give today's skeletons exactly; resized
    ones (swscale's chroma-interpolating scaler -> bilinear on the device) stay close."""
    host, _, resized = both
    for key in host:
        a, b = host[key], resized[key]
        assert np.array_equal(a["frame_index"], b["frame_index"]), key
        present = (np.abs(a["box"]).sum(-1) > 0) & (np.abs(b["box"]).sum(-1) > 0)
        assert present.sum() >= 0.9 * (np.abs(a["box"]).sum(-1) > 0).sum(), key
        seen = present[..., None] & (a["keypoint_score"] > 0.5)
        d = np.linalg.norm(a["keypoint"] - b["keypoint"], axis=-1)[seen]
        h, w = a["img_shape"]
        print(f"{key} ({w}x{h}): {seen.sum()} joints, median |dxy| {np.median(d):.2f} px, "
              f"max {d.max():.2f}")
        if max(w, h) == 640:
            assert d.max() <= 1e-3, key
        else:
            assert np.median(d) <= 3.0, key


def test_device_resize_agrees_with_an_independent_bilinear_resize(tmp_path):
    """Frames packed at their own size and resized on the device give the people of the same
    frames resized by OpenCV (bilinear) and letterboxed on the host."""
    import cv2

    from tmor.pipeline import video
    from tmor.pipeline.pose import get_backend

    backend = get_backend("ultralytics", str(YOLO), device="cpu")
    backend.load()
    clip = fetch_encode(DATA / "videos" / "ucf101_archery.avi", tmp_path / "a.mp4", 3.0)
    native = list(video.read_frames(clip, range(0, 75, 5)))  # 320x240: twice that at imgsz 640
    size = backend.input_size(native[0].shape[1], native[0].shape[0])
    by_cv2 = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in native]
    scale = [(native[0].shape[1] / size[0], native[0].shape[0] / size[1])] * len(native)
    on_device = backend.infer(native)
    on_host = backend.infer_scaled(by_cv2, scale)
    ds = []
    for a, b in zip(on_device, on_host, strict=True):
        assert len(a) == len(b) > 0
        j = np.linalg.norm(a.boxes[:, None, :2] - b.boxes[None, :, :2], axis=-1).argmin(1)
        ds.append(np.linalg.norm(a.keypoints - b.keypoints[j], axis=-1)[a.keypoint_scores > 0.5])
    d = np.concatenate(ds)
    print(f"device vs OpenCV resize: median {np.median(d):.2f} px, max {d.max():.2f} px")
    assert np.median(d) <= 0.5

    backend._device_pose.uint8_resize = False  # the CUDA branch: float resize, then rounded;
    # a 2x upscale of a 320x240 clip: one level of difference moves small people's joints
    as_on_cuda = backend.infer(native)
    d = []
    for a, b in zip(on_device, as_on_cuda, strict=True):
        assert len(a) == len(b)
        d.append(np.linalg.norm(a.keypoints - b.keypoints, axis=-1)[a.keypoint_scores > 0.5])
    d = np.concatenate(d)
    print(f"uint8 vs float resize: median {np.median(d):.3f} px, max {d.max():.2f} px")
    assert np.median(d) <= 0.5  # the two differ by one level in 16% of the pixels
