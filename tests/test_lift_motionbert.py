"""MotionBERT lifting (``--lift motionbert:CKPT``): checkpoints saved the way MotionBERT saves them
(``{"model_pos": {"module." + key: tensor}}``) with random weights, the batched padded lifter
against plain per-chunk network calls, flip symmetry, gaps, and ``extract-pose`` end to end on
real clips with the real YOLO11n-pose weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, tree_state

from tmor.errors import PluginUnavailable
from tmor.hashing import file_sha256
from tmor.pipeline.pose.dstformer import DSTformer, DSTformerConfig
from tmor.pipeline.pose.motionbert import (
    MotionBERTLifter,
    chunks_of,
    flip,
    network_input,
)
from tmor.skeleton import layouts as L

DATA = SHARED_DATA
YOLO = DATA / "models" / "yolo11n-pose.pt"
CLI = [sys.executable, "-c", "from tmor.cli.data import main; main()"]
#: COCO-17 joint i of a mirrored image is joint COCO_MIRROR[i] of the original
COCO_MIRROR = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


#: a small network of the same structure, with a 27-frame window, for the lifter's chunking,
#: padding, flip and gap rules (the released sizes load only through checkpoints, below)
TINY = DSTformerConfig(dim_feat=32, dim_rep=64, depth=2, mlp_ratio=2, maxlen=27)


def random_network(config: DSTformerConfig, seed: int = 0) -> DSTformer:
    """Random weights, every parameter perturbed (so the stream fusion is not 50/50)."""
    torch.manual_seed(seed)
    net = DSTformer(config)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if "norm" in name else 0.03))
    return net.eval()


def save_checkpoint(path: Path, config: DSTformerConfig = DSTformerConfig(), seed: int = 0
                    ) -> Path:
    """A random network saved as MotionBERT's train.py saves it (DataParallel keys, training
    state beside)."""
    net = random_network(config, seed)
    torch.save({"epoch": 3, "lr": 5e-4, "min_loss": 41.5,
                "model_pos": {"module." + k: v for k, v in net.state_dict().items()}}, path)
    return path


@pytest.fixture(scope="module")
def lite(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lite.bin")


@pytest.fixture(scope="module")
def loaded(lite) -> MotionBERTLifter:
    lifter = MotionBERTLifter(str(lite), device="cpu", batch_size=3)
    lifter.load()
    return lifter


@pytest.fixture
def lifter() -> MotionBERTLifter:
    """The lifter around the small network (its window: 27 frames), 3 chunks per batch."""
    lifter = MotionBERTLifter("-", device="cpu", batch_size=3, precision="fp32")
    lifter.net = random_network(TINY)
    return lifter


def random_track(rng: np.random.Generator, frames: int, size=(640, 360)):
    kp = rng.uniform([40, 20], [size[0] - 40, size[1] - 20], (frames, 17, 2)).astype(np.float32)
    sc = rng.uniform(0.05, 1, (frames, 17)).astype(np.float32)
    return kp, sc, size


def direct(net: DSTformer, x: np.ndarray) -> np.ndarray:
    """One unpadded call per chunk: the network on x and on its mirror image, averaged."""
    t = torch.from_numpy(x)[None]
    with torch.no_grad():
        return ((net(t) + flip(net(flip(t)))) / 2)[0].numpy()


# ---- checkpoints ---------------------------------------------------------------------------------


def test_lite_and_base_checkpoints_load_strictly(tmp_path, lite, loaded):
    saved = torch.load(lite, weights_only=True)["model_pos"]
    state = loaded.net.state_dict()
    assert sorted("module." + k for k in state) == sorted(saved)
    assert all(torch.equal(state[k], saved["module." + k]) for k in state)
    assert loaded.net.config.variant == "lite" and loaded.sha256 == file_sha256(lite)
    assert (loaded.maxlen, loaded.precision) == (243, "fp32")  # fp32 on the CPU by default

    base = save_checkpoint(tmp_path / "base.bin", DSTformerConfig(dim_feat=512, mlp_ratio=2))
    b = MotionBERTLifter(str(base))
    b.load()
    assert b.net.config.variant == "base" and b.net.config.dim_feat == 512

    state = torch.load(lite, weights_only=True)
    state["model_pos"]["module.extra.weight"] = torch.zeros(1)  # an unexpected key
    torch.save(state, tmp_path / "extra.bin")
    with pytest.raises(PluginUnavailable, match=r"extra.bin: .*unexpected \['extra.weight'\]"):
        MotionBERTLifter(str(tmp_path / "extra.bin")).load()
    del state["model_pos"]["module.extra.weight"], state["model_pos"]["module.head.bias"]
    torch.save(state, tmp_path / "missing.bin")
    with pytest.raises(PluginUnavailable, match=r"missing \['head.bias'\]"):
        MotionBERTLifter(str(tmp_path / "missing.bin")).load()


def test_a_checkpoint_of_neither_size_is_refused(tmp_path):
    odd = save_checkpoint(tmp_path / "odd.bin", DSTformerConfig(dim_feat=128, mlp_ratio=4))
    with pytest.raises(PluginUnavailable, match="shapes match neither released DSTformer") as e:
        MotionBERTLifter(str(odd)).load()
    assert "\n" not in str(e.value) and "dim_feat 128" in str(e.value)
    torch.save({"model_pos": {"w": torch.zeros(3)}}, tmp_path / "other.bin")
    with pytest.raises(PluginUnavailable, match="not a DSTformer state dict"):
        MotionBERTLifter(str(tmp_path / "other.bin")).load()


# ---- the lifter's numbers ------------------------------------------------------------------------


def test_batched_padded_chunks_equal_one_call_per_chunk(lifter):
    rng = np.random.default_rng(0)
    chunks = [network_input(*random_track(rng, n)[:2], 640, 360) for n in (27, 10, 20, 1, 5)]
    batched = lifter.run(chunks)  # by length, 3 a batch: 27, 20, 10 and 5, 1, each batch padded
    # to its longest chunk and masked
    for x, y in zip(chunks, batched, strict=True):
        assert y.shape == x.shape
        np.testing.assert_allclose(y, direct(lifter.net, x), atol=2e-5)


def test_chunking_and_padding_match_one_long_call_and_the_chunk_rule(lifter):
    rng = np.random.default_rng(1)
    short, long_ = random_track(rng, 20), random_track(rng, 70)
    y_short, y_long = lifter.lift_tracks([short, long_])
    # <= maxlen: one unpadded call over the whole track, its first root depth set to 0
    want = direct(lifter.net, network_input(short[0], short[1], 640, 360))
    want[0, 0, 2] = 0
    np.testing.assert_allclose(y_short, want, atol=2e-5)
    # > maxlen: 27 + 27 + 16 frames, each chunk on its own, each first root depth 0
    x = network_input(long_[0], long_[1], 640, 360)
    assert [s.stop - s.start for s in chunks_of(70, 27)] == [27, 27, 16]
    for s in chunks_of(70, 27):
        part = direct(lifter.net, x[s])
        part[0, 0, 2] = 0
        np.testing.assert_allclose(y_long[s], part, atol=2e-5)
    assert y_long[27, 0, 2] == 0 and y_long[54, 0, 2] == 0 and y_long[1, 0, 2] != 0


@pytest.mark.parametrize("units", ["normalized", "pixels"])
def test_lifting_the_mirrored_track_gives_the_mirrored_result(lifter, units):
    lifter.units = units
    rng = np.random.default_rng(2)
    kp, sc, (w, h) = random_track(rng, 40)
    mirrored = np.stack([w - kp[..., 0], kp[..., 1]], -1)[:, COCO_MIRROR]
    y, y_m = lifter.lift_tracks([(kp, sc, (w, h)), (mirrored, sc[:, COCO_MIRROR], (w, h))])
    back = flip(y_m)
    if units == "pixels":  # flip() mirrors about x = 0; pixels mirror about x = w / 2
        back[..., 0] += w
    tol = 1e-5 * (min(w, h) / 2 if units == "pixels" else 1)
    np.testing.assert_allclose(back, y, atol=tol)
    assert np.abs(y).max() > 0.05  # a real result, not zeros


def test_tracks_of_different_lengths_with_gaps_lift_alone_and_together_alike(lifter):
    rng = np.random.default_rng(3)
    t = 40
    kp = np.zeros((2, t, 17, 2), np.float32)
    sc = np.zeros((2, t, 17), np.float32)
    present = np.zeros((2, t), bool)
    present[0] = True
    present[0, 20:25] = False  # a gap of 5 frames: 35 frames seen, 2 chunks
    present[1, 10:22] = True  # a short track
    for m in range(2):
        k, s, _ = random_track(rng, int(present[m].sum()))
        kp[m, present[m]], sc[m, present[m]] = k, s
    other = random_track(rng, 9)
    clip_a = (kp, sc, present, (640, 360))
    clip_b = (other[0][None], other[1][None], np.ones((1, 9), bool), (640, 360))
    together = lifter.lift_clips([clip_a, clip_b])
    alone = lifter.lift_clips([clip_a])[0]
    assert together[0].shape == (2, t, 17, 3) and together[1].shape == (1, 9, 17, 3)
    np.testing.assert_allclose(together[0], alone, atol=2e-5)
    assert not together[0][~present].any()  # zeros where a track is absent
    assert (np.abs(together[0][present]).sum(-1) > 0).all()
    # the gap is closed up: the track's frames lifted as one sequence of its seen frames
    (seq,) = lifter.lift_tracks([(kp[0, present[0]], sc[0, present[0]], (640, 360))])
    np.testing.assert_allclose(together[0][0, present[0]], seq, atol=2e-5)


def test_bf16_autocast_on_cpu_stays_close_to_fp32(lite):
    rng = np.random.default_rng(4)
    tracks = [random_track(rng, n) for n in (40, 9)]
    out = {}
    for precision in ("fp32", "bf16"):
        lifter = MotionBERTLifter(str(lite), device="cpu", precision=precision)
        lifter.load()
        out[precision] = np.concatenate(lifter.lift_tracks(tracks))
    err = np.abs(out["bf16"] - out["fp32"]).max()
    assert 0 < err < 0.05 * np.abs(out["fp32"]).max(), err


def test_h36m17_converts_to_coco17_unik17_ntu25_where_joints_match():
    k3 = np.random.default_rng(5).normal(size=(1, 4, 17, 3)).astype(np.float32)
    names = L.JOINTS["h36m17"]
    coco, _ = L.convert(k3, None, "h36m17", "coco17")
    unik, _ = L.convert(k3, None, "h36m17", "unik17")
    ntu, _ = L.convert(k3, None, "h36m17", "ntu25")
    for layout, out in (("coco17", coco), ("unik17", unik), ("ntu25", ntu)):
        for j, name in enumerate(L.JOINTS[layout]):
            if name in names:  # same joint name: copied
                np.testing.assert_array_equal(out[..., j, :], k3[..., names.index(name), :])
    np.testing.assert_array_equal(unik[..., 4, :], k3[..., 0, :])  # mid_hip = pelvis
    np.testing.assert_array_equal(ntu[..., 20, :], k3[..., 8, :])  # spine_shoulder = thorax
    np.testing.assert_array_equal(coco[..., 0, :], k3[..., 9, :])  # nose (MotionBERT's rule)
    assert L.synthesized("h36m17", "coco17") == ["left_eye", "right_eye", "left_ear", "right_ear"]
    assert L.missing("h36m17", "ntu25") == [] and len(L.bones("h36m17")) == 16
    # what pack stores: the lifter's h36m17 in the 2D layout; 3D already in it stays as it is
    from tmor.skeleton.npz import keypoint_3d_in_layout

    lifted = {"keypoint_3d": k3, "layout": "coco17", "layout_3d": "h36m17"}
    np.testing.assert_array_equal(keypoint_3d_in_layout(lifted), coco)
    same = {"keypoint_3d": k3, "layout": "h36m17"}
    assert keypoint_3d_in_layout(same) is not None and (keypoint_3d_in_layout(same) == k3).all()
    assert keypoint_3d_in_layout({"layout": "coco17"}) is None


# ---- extract-pose end to end ---------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, lite):
    if not YOLO.is_file() or shutil.which("ffmpeg") is None:
        pytest.skip(f"YOLO weights ({YOLO}) or ffmpeg missing")
    tmp = tmp_path_factory.mktemp("lift_e2e")
    src = tmp / "in"
    src.mkdir()
    for name in ("basketball_two_person.mp4", "ntu_two_person_hug.mp4"):  # 2 s of each
        subprocess.run([shutil.which("ffmpeg"), "-v", "error", "-i", str(DATA / "videos" / name),
                        "-t", "2", "-map", "0:v:0", "-c", "copy", str(src / name)], check=True)
    root = tmp / "corpus"
    r = _cli("fetch", str(src), "--root", str(root), "--allow-local", str(src), "--no-progress")
    assert r.returncode == 0, r.stderr
    r = _cli("extract-pose", "--root", str(root), "--model", str(YOLO), "--fps", "4",
             "--batch-size", "4", "--lift", f"motionbert:{lite}", "--no-progress")
    assert r.returncode == 0, r.stderr
    return root


def test_extract_pose_lifts_every_track_of_every_sample(corpus, lite):
    from tmor.shards.tario import read_tar_samples
    from tmor.skeleton.npz import decode_pose, keypoint_3d_in_layout

    samples = {k: v for tar in sorted((corpus / "pose").glob("*.tar"))
               for k, v in read_tar_samples(str(tar)).items()}
    assert len(samples) == 2
    tracks = 0
    for key, members in samples.items():
        p = decode_pose(members["pose.npz"])
        m, t = p["keypoint"].shape[:2]
        assert m >= 1 and p["keypoint_3d"].shape == (m, t, 17, 3), key
        assert p["keypoint_3d"].dtype == np.float32
        present = np.abs(p["box"]).sum(-1) > 0
        assert present.any(), key
        assert (np.abs(p["keypoint_3d"][present]).sum(-1) > 0).all(), key  # every track, frame
        assert not p["keypoint_3d"][~present].any()
        assert (p["layout_3d"], p["lifter"], p["lifter_units"]) == (
            "h36m17", "motionbert", "normalized")
        assert p["lifter_sha256"] == file_sha256(lite)
        assert keypoint_3d_in_layout(p).shape == (m, t, 17, 3)  # coco17, as pack stores it
        tracks += m
    card = json.loads((corpus / "corpus.json").read_text())
    lifter = card["pose"]["config"]["lifter"]
    assert lifter["sha256"] == file_sha256(lite) and lifter["layout"] == "h36m17"
    print(f"{len(samples)} samples, {tracks} tracks, all with keypoint_3d")


def test_show_draws_the_3d_panel_beside_the_frame(corpus, tmp_path):
    from PIL import Image

    from tmor.shards.tario import read_tar_samples

    key = next(iter(read_tar_samples(str(next((corpus / "pose").glob("*.tar"))))))
    sheet = tmp_path / "sheet.png"
    r = _cli("show", key, "--root", str(corpus), "-o", str(sheet), "--tiles", "2", "--cols", "1",
             "--tile-width", "160")
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(sheet).convert("RGB"))
    th = img.shape[0] // 2
    assert img.shape[1] == 160 + th  # frame tile + a square 3D panel
    panel = img[:th, 160:]
    assert (np.abs(panel.astype(int) - (230, 25, 75)).sum(-1) < 60).sum() > 10  # track 0 drawn


def test_a_bad_checkpoint_is_one_error_line_and_leaves_the_corpus_alone(corpus, tmp_path):
    odd = save_checkpoint(tmp_path / "odd.bin", DSTformerConfig(dim_feat=384, mlp_ratio=4))
    before = tree_state(corpus)
    r = _cli("extract-pose", "--root", str(corpus), "--model", str(YOLO), "--overwrite",
             "--lift", f"motionbert:{odd}", "--no-progress")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tmor-data: error: ") and "odd.bin" in lines[0]
    assert "shapes match neither released DSTformer" in lines[0]
    assert tree_state(corpus) == before
