"""Zero-shot with the tiny open_clip model (random weights, loaded like real ones) on real
skeleton windows: the command's numbers equal a direct computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _transfer_data import DATA, require_data, windows_pickle

CLASSES = ["falling", "walking", "drop", "figure skating"]
TEMPLATES = ["a person {}.", "{}"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require_data()
    import torch

    from tmor.model.checkpoint import save_checkpoint
    from tmor.model.heads import ProjectionHeads
    from tmor.model.unik import UNIK
    from tmor.pipeline.vl.tiny import write_open_clip

    tmp = tmp_path_factory.mktemp("zs")
    spec = write_open_clip(tmp / "clip")
    torch.manual_seed(0)
    enc = UNIK(2, 25, 1)
    heads = ProjectionHeads(256, video_dim=32, text_dim=32, proj_dim=64, hidden_dim=64)
    ckpt = tmp / "pretrain.pt"
    save_checkpoint(str(ckpt), enc, heads, {"text_encoder": spec, "frames": 16})
    (tmp / "names.txt").write_text("# classes\n" + "\n".join(CLASSES) + "\n")
    windows_pickle(tmp / "w.pkl", max_train=1, max_test=3)
    return tmp, spec, ckpt


def _direct_text(spec: str, names: list[str]) -> np.ndarray:
    """Text embeddings straight from open_clip (no tmor code)."""
    import open_clip
    import torch

    _, cfg, pt = spec.split(":")
    open_clip.add_model_config(cfg)
    model = open_clip.create_model(Path(cfg).stem, pretrained=pt).eval()
    tok = open_clip.get_tokenizer(Path(cfg).stem)
    with torch.no_grad():
        e = model.encode_text(tok([t.format(n) for n in names for t in TEMPLATES])).numpy()
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)
    e = e.reshape(len(names), len(TEMPLATES), -1).mean(1)
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def _direct_motion(ckpt: Path, x: np.ndarray, text: np.ndarray) -> np.ndarray:
    import torch

    from tmor.model.heads import ProjectionHeads
    from tmor.model.unik import UNIK

    state = torch.load(ckpt, weights_only=False)
    enc = UNIK.from_config(state["model_config"])
    enc.load_state_dict(state["encoder"])
    heads = ProjectionHeads(256, video_dim=32, text_dim=32, proj_dim=64, hidden_dim=64)
    heads.load_state_dict(state["heads"])
    enc.eval()
    heads.eval()
    with torch.no_grad():
        m = torch.nn.functional.normalize(heads.motion["mt"](enc(torch.from_numpy(x))), dim=-1)
        t = torch.nn.functional.normalize(heads.target["mt"](torch.from_numpy(text)), dim=-1)
    return (m @ t.T).numpy()


def test_zero_shot_equals_direct_computation(setup):
    from typer.testing import CliRunner

    from tmor.cli.train import app as train_app
    from tmor.skeleton.transforms import to_ctvm
    from tmor.train.data import load_split

    tmp, spec, ckpt = setup
    # the text encoder spec comes from the checkpoint's train_config, frames too
    res = CliRunner().invoke(train_app, [
        "zero-shot", "--ckpt", str(ckpt), "--classes", str(tmp / "names.txt"),
        "--data", str(tmp / "w.pkl"), "--split", "test", "--out", str(tmp / "out"),
        "--template", TEMPLATES[0], "--template", TEMPLATES[1], "--max-persons", "1",
        "--device", "cpu"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output.strip().splitlines()[-1])
    r = json.loads((tmp / "out" / "results.json").read_text())
    assert printed["top1"] == r["top1"] and r["config"]["templates"] == TEMPLATES
    data = load_split(str(tmp / "w.pkl"), "test")
    x = np.stack([to_ctvm(s.keypoint, s.keypoint_score, s.layout, frames=16, max_persons=1,
                          channels=2) for s in data.samples])
    direct = _direct_motion(ckpt, x, _direct_text(spec, CLASSES))
    scores = np.load(tmp / "out" / "scores.npy")
    np.testing.assert_allclose(scores, direct, atol=1e-5)
    y = np.array([CLASSES.index(s.label_name) for s in data.samples])
    assert r["num_samples"] == len(y) > 0
    assert r["top1"] == pytest.approx(float(np.mean(direct.argmax(1) == y)))
    assert r["classes"] == CLASSES and r["chance"] == 0.25


def test_zero_shot_with_video_averages_video_text_cosine(setup, tmp_path):
    """FallFree recordings with their own videos: the video embedding comes from 8 real frames
    through the tiny encoder, stored in triplet shards as the embed stage does."""
    from tmor.pipeline.video import read_frames
    from tmor.pipeline.vl import frame_indices, load_encoder
    from tmor.shards import importers as imp
    from tmor.train.data import load_split
    from tmor.train.zeroshot import ZeroShotConfig, run_zero_shot

    tmp, spec, ckpt = setup
    pairs = [("Fall-1-55-3", "fallfree_fall_1_55_3.avi"),
             ("Non-fall-2-45-1", "fallfree_nonfall_2_45_1.avi")]
    vl = load_encoder(spec, device="cpu")
    triplets = []
    for stem, video in pairs:
        csv = DATA / "skeletons" / "fallfree" / f"{stem}_Skeleton.csv"
        kp3, sc = imp.read_kinect_csv(str(csv))
        t = imp.make_triplet(str(csv), kp3[..., :2], sc, "ntu25", 30.0,
                             "falling" if stem.startswith("Fall") else "walking", kp3)
        src = str(DATA / "videos" / video)
        frames = read_frames(src, frame_indices(kp3.shape[1]), size=(224, 224))
        t.video = vl.encode_video(frames[None])[0].astype(np.float16)
        triplets.append(t)
    imp.write_imported(str(tmp_path), triplets, 10, {"format": "test"})
    cfg = ZeroShotConfig(ckpt=str(ckpt), classes=str(tmp / "names.txt"), data=str(tmp_path),
                         split=None, templates=TEMPLATES, with_video=True, max_persons=1,
                         frames=16, device="cpu", out=str(tmp_path / "out"))
    r = run_zero_shot(cfg, text_encoder=vl, log=lambda *_: None)
    data = load_split(str(tmp_path), None)
    from tmor.skeleton.transforms import to_ctvm

    x = np.stack([to_ctvm(s.keypoint, s.keypoint_score, s.layout, frames=16, max_persons=1,
                          channels=2) for s in data.samples])
    text = _direct_text(spec, CLASSES)
    v = np.stack([s.video for s in data.samples]).astype(np.float32)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    direct = (_direct_motion(ckpt, x, text) + v @ text.T) / 2
    y = np.array([CLASSES.index(s.label_name) for s in data.samples])
    np.testing.assert_allclose(np.load(tmp_path / "out" / "scores.npy"), direct, atol=1e-5)
    assert r["num_samples"] == 2
    assert r["top1"] == pytest.approx(float(np.mean(direct.argmax(1) == y)))
    assert r["mean_class_accuracy"] == pytest.approx(
        float(np.mean([(direct.argmax(1) == y)[y == c].mean() for c in np.unique(y)])))


def test_label_ids_by_name_or_by_unnamed_integer():
    from tmor.train.data import LoadedData, SkeletonSample
    from tmor.train.zeroshot import label_ids

    def smp(label: int, name: str | None) -> SkeletonSample:
        z = np.zeros((1, 2, 25, 2), np.float32)
        return SkeletonSample("s", z, z[..., 0], "ntu25", label=label, label_name=name)

    named = LoadedData([smp(0, "Walking"), smp(1, "falling"), smp(2, "unknown")],
                       ["walking", "falling", "unknown"])
    assert label_ids(named, CLASSES).tolist() == [1, 0, -1]
    unnamed = LoadedData([smp(2, "2"), smp(0, "0")], ["0", "1", "2"])
    assert label_ids(unnamed, CLASSES).tolist() == [2, 0]
