"""The same YOLO11n-pose network as .pt (tensor engine) and .onnx (ultralytics predict engine)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tmor.pipeline import video
from tmor.pipeline.pose import get_backend

DATA = Path(os.environ.get("TMOR_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
PT, ONNX = DATA / "models" / "yolo11n-pose.pt", DATA / "models" / "yolo11n-pose.onnx"
CLIP = DATA / "videos" / "basketball_two_person.mp4"


@pytest.mark.skipif(not (PT.is_file() and ONNX.is_file() and CLIP.is_file()),
                    reason=f"YOLO weights or clip missing under {DATA}")
def test_pt_tensor_engine_and_onnx_predict_engine_agree():
    pytest.importorskip("onnxruntime")
    pt = get_backend("ultralytics", str(PT))
    onnx = get_backend("ultralytics", str(ONNX))
    pt.load()
    onnx.load()
    assert (pt.engine, onnx.engine) == ("tensor", "predict")
    assert pt.model_sha256 == "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"
    frames = video.read_frames(CLIP, [0, 150], size=pt.input_size(426, 240))
    for a, b in zip(pt.infer(list(frames)), onnx.infer(list(frames)), strict=True):
        assert len(a) == len(b) == 2
        ca = (a.boxes[:, :2] + a.boxes[:, 2:]) / 2
        cb = (b.boxes[:, :2] + b.boxes[:, 2:]) / 2
        d = np.linalg.norm(ca[:, None] - cb[None], axis=-1)  # match people by box centre
        j = d.argmin(1)
        # the .onnx takes a square 640x640 letterbox, the tensor engine a 640x384 one
        assert sorted(j.tolist()) == [0, 1] and d.min(1).max() < 8.0
        kd = np.linalg.norm(a.keypoints - b.keypoints[j], axis=-1)[a.keypoint_scores > 0.5]
        print(f"pt vs onnx: box centres {d.min(1).round(1).tolist()} px, keypoints mean "
              f"{kd.mean():.1f} px (640x361 frame)")
        assert kd.mean() < 8.0
