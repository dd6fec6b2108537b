"""The CUDA branches of the GPU paths, run on the CPU (issue 22): what a GPU run would do that a
CPU run does not, checked without a GPU.

- a training step never makes the host wait for the device: run on the ``meta`` device, where
  every value read (``.item()``, ``bool()``, boolean indexing) fails, with every host-to-device
  copy non-blocking; its statistics come back in one copy per log interval;
- a resume reads the checkpoint onto the CPU whatever the run's device (``meta`` stands in for
  CUDA: a checkpoint mapped there cannot be read back), and restores the RNG states;
- ``--device cuda:1`` in one process stays GPU 1.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode


class BlockingCopies(TorchDispatchMode):
    """Records host-to-device copies made without ``non_blocking`` (on CUDA each waits for the
    device's queue to drain): ``.to(device)`` and ``copy_``. Not seen: ``torch.tensor(data,
    device=...)`` / ``torch.as_tensor``, which copy below the Python dispatch modes (the training
    step makes none: its only ``as_tensor`` is of a host table in ``set_table``)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocking: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        aten = torch.ops.aten
        if func is aten._to_copy.default:
            src, dev = args[0], kwargs.get("device")
            if (src.device.type == "cpu" and dev is not None and torch.device(dev).type != "cpu"
                    and not kwargs.get("non_blocking", False)):
                self.blocking.append(f"{func} {tuple(src.shape)}")
        elif func is aten.copy_.default:
            dst, src = args[0], args[1]
            nb = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
            if src.device.type == "cpu" and dst.device.type != "cpu" and not nb:
                self.blocking.append(f"{func} {tuple(src.shape)}")
        return func(*args, **kwargs)


def _trainer(device: str, **kw):
    from tmor.train.config import PretrainConfig
    from tmor.train.dist import DistContext
    from tmor.train.pretrain import Trainer

    kw = {"queue_size": 16, **kw}
    cfg = PretrainConfig(base_channels=8, proj_dim=16, hidden_dim=32,
                         warmup_steps=1, device="cpu", grad_clip=1.0, **kw)
    return Trainer(cfg, DistContext(device=torch.device(device)), 3, 25, 1, 32, 32,
                   total_steps=10)


def _batch(n: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    has_video = torch.ones(n, dtype=torch.bool)
    has_video[2] = False  # one sample without a video embedding: the mv pushes skip it
    return {"pose": torch.randn(n, 3, 16, 25, 1, generator=g),
            "video": torch.randn(n, 32, generator=g), "text": torch.randn(n, 32, generator=g),
            "has_video": has_video, "has_text": torch.ones(n, dtype=torch.bool),
            "index": torch.arange(n) + 8 * seed}


def test_the_blocking_copy_detector_sees_blocking_uploads_only() -> None:
    with BlockingCopies() as copies:
        torch.ones(3).to("meta", non_blocking=True)
        torch.empty(3, device="meta").copy_(torch.ones(3), non_blocking=True)
    assert copies.blocking == []
    with BlockingCopies() as copies:
        torch.ones(3).to("meta")
        torch.empty(3, device="meta").copy_(torch.ones(3))
    assert len(copies.blocking) == 2, copies.blocking


def test_training_step_never_waits_for_the_device() -> None:
    tr = _trainer("meta", queue_size=32)
    with BlockingCopies() as copies:
        rows = [tr.train_step(_batch(seed=i)) for i in range(3)]
    assert copies.blocking == []
    assert tr.step == 3 and rows[-1]["loss"].device.type == "meta"
    assert tr.queues["mv"].count == 3 * 7 and tr.queues["mm"].count == 3 * 8  # host-known counts
    # with cluster guidance on: the dominated-step check and the cluster ids stay on the device
    guided = _trainer("meta", queue_size=32, guidance_warmup_steps=0)
    guided.set_table(torch.tensor([i // 3 for i in range(40)]))  # a host copy, moved once
    with BlockingCopies() as copies:
        rows = [guided.train_step(_batch(seed=i)) for i in range(3)]
    assert copies.blocking == [] and rows[-1]["guided"].device.type == "meta"


def test_step_statistics_come_back_in_one_copy_per_interval() -> None:
    tr = _trainer("cpu")
    rows = [tr.train_step(_batch(seed=i)) for i in range(3)]
    flushed = tr.flush_rows()
    assert tr.flush_rows() == []
    assert [r["step"] for r in flushed] == [1, 2, 3]
    for lazy, row in zip(rows, flushed, strict=True):
        for k in ("loss", "loss_mm", "loss_mv", "pos_mm", "pos_mv"):
            assert isinstance(row[k], float) and row[k] == float(lazy[k])
        assert row["samples_per_s"] > 0 and row["guided"] == 0.0
    assert flushed[0]["loss"] == pytest.approx(flushed[0]["loss_mm"] + flushed[0]["loss_mv"])


def test_resume_reads_the_checkpoint_onto_the_cpu(tmp_path) -> None:
    tr = _trainer("cpu")
    tr.set_table(torch.tensor([i // 3 for i in range(40)]))
    tr.train_step(_batch())
    np.random.seed(123)
    random.seed(5)
    want_np, want_py, want_torch = np.random.get_state(), random.getstate(), torch.get_rng_state()
    tr.save(str(tmp_path / "last.pt"))
    np.random.seed(0)
    random.seed(0)
    torch.manual_seed(0)
    other = _trainer("cpu")
    other.ctx.device = torch.device("meta")  # the run's device: where its cluster labels go
    other.load(str(tmp_path / "last.pt"))
    got = np.random.get_state()
    assert got[0] == want_np[0] and np.array_equal(got[1], want_np[1]) and got[2:] == want_np[2:]
    assert random.getstate() == want_py and torch.equal(torch.get_rng_state(), want_torch)
    assert other.step == 1 and other.table.device.type == "meta"
    for a, b in zip(tr.encoder.state_dict().values(), other.encoder.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(other.queues["mm"].entries()[1], tr.queues["mm"].entries()[1])


def test_effective_clusters_read_nothing_back() -> None:
    from tmor.model.losses import effective_clusters

    table = torch.tensor([0, -1, 1, 1, -1])
    index = torch.tensor([0, 1, 2, 3, 9, 4])
    want = effective_clusters(index, table)
    assert want.tolist() == [0, -2, 1, 1, -10, -5]
    meta = effective_clusters(index.to("meta"), table.to("meta"))  # fails on a value read
    assert meta.shape == want.shape


@pytest.mark.parametrize("device, world, local, want", [
    ("cuda:1", 1, 0, "cuda:1"), ("cuda", 1, 0, "cuda:0"), ("cuda:1", 2, 1, "cuda:1"),
    ("cuda", 4, 3, "cuda:3"), ("cuda:2", 2, 0, "cuda:0"), ("cpu", 2, 1, "cpu")])
def test_rank_device(device: str, world: int, local: int, want: str) -> None:
    from tmor.train.dist import rank_device

    assert rank_device(device, world, local) == torch.device(want)


def test_attention_logits_do_not_overflow_under_fp16_autocast() -> None:
    """C_e T = 16 x 64 products per attention logit: unscaled, large activations pass fp16's
    65,504 and the softmax turns to NaN."""
    from tmor.model.unik import SpatialUnit

    torch.manual_seed(0)
    unit = SpatialUnit(64, 64, 17).eval()
    torch.nn.init.ones_(unit.bn.weight)  # the attention branch counts fully (init: 1e-6)
    x = torch.randn(2, 64, 64, 17) * 12
    with torch.no_grad():
        q = unit.theta[0](x).reshape(2, -1, 17)
        k = unit.phi[0](x).reshape(2, -1, 17)
        assert (q.transpose(1, 2) @ k).abs().max() > 65504  # the unscaled logits overflow
        ref = unit(x)
        with torch.autocast("cpu", dtype=torch.float16):
            half = unit(x)
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), ref, rtol=0, atol=2e-3 * float(ref.abs().max()))


@pytest.mark.parametrize("frames, per_frame", [(4, 50), (128, 200)])
def test_nms_in_one_call_keeps_what_batched_nms_keeps(frames: int, per_frame: int) -> None:
    """Crowded batches: 128 frames x 200 candidates = 25,600 boxes, where torchvision's
    batched_nms loops over the frames (above 25,000 boxes on CUDA, 1,000 on the CPU); and a
    small batch (its coordinate trick)."""
    import torchvision

    from tmor.pipeline.pose.device import nms_by_group

    g = torch.Generator().manual_seed(frames)
    n = frames * per_frame
    # candidates as a detector gives them: jittered copies of a few people's boxes per frame
    people = torch.randint(0, 8 * frames, (n,), generator=g)
    centre = torch.rand(8 * frames, 2, generator=g) * torch.tensor([640.0, 384.0])
    size = 20 + torch.rand(8 * frames, 2, generator=g) * 200
    jitter = torch.randn(n, 4, generator=g) * 6
    half = size[people] / 2
    boxes = torch.cat([centre[people] - half, centre[people] + half], 1) + jitter
    scores = torch.rand(n, generator=g)
    frame = people % frames
    want = torchvision.ops.batched_nms(boxes, scores, frame, 0.45)
    got = nms_by_group(boxes, scores, frame, 0.45)
    assert 0 < len(want) < n / 4
    assert torch.equal(got.sort().values, want.sort().values)  # the same boxes
    assert (scores[got].diff() <= 0).all()  # in decreasing score order (ties either way)
    assert len(nms_by_group(boxes[:0], scores[:0], frame[:0], 0.45)) == 0


# -- the pose network on the device -------------------------------------------------------------
def _yolo_and_frames(n: int = 4):
    from conftest import SHARED_DATA as data

    from tmor.pipeline import video

    weights = data / "models" / "yolo11n-pose.pt"
    clip = data / "videos" / "basketball_two_person.mp4"
    if not (weights.is_file() and clip.is_file()):
        pytest.skip(f"YOLO weights / clips not in {data}")
    frames = list(video.read_frames(clip, range(0, 10 * n, 10)))
    return str(weights), frames


def test_side_stream_upload_gives_the_same_people() -> None:
    """The upload path (copy on a side stream in prepare, the compute stream waits for its
    event) runs here through torch.cpu's stand-in streams and events: same people."""
    from tmor.pipeline.pose import get_backend

    weights, frames = _yolo_and_frames()
    backend = get_backend("ultralytics", weights, device="cpu", imgsz=320)
    backend.load()
    dp = backend._device_pose
    assert dp.upload_stream is None  # the CPU path: copied (not at all) when run
    plain = dp.run(dp.prepare(frames))
    dp.upload_stream = torch.cpu.Stream()
    prepared = dp.prepare(frames)
    assert prepared.staged is not None and prepared.ready is not None
    streamed = dp.run(prepared)
    assert sum(len(d) for d in plain) > 0
    for a, b in zip(plain, streamed, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_bf16_network_decodes_in_fp32_and_channels_last_changes_nothing() -> None:
    """In bf16 the head decodes boxes and keypoints in fp32: not rounded to bf16's grid (1-4 px
    at 256-640 px), much closer to the fp32 network; a channels-last network gives the fp32
    output."""
    import copy

    from ultralytics import YOLO

    from tmor.pipeline.pose.ultralytics_backend import prepare_network

    weights, frames = _yolo_and_frames(1)
    net = YOLO(weights).model.fuse()
    canvas = np.full((1, 384, 640, 3), 114, np.uint8)
    f = frames[0][: 384, : 640]
    canvas[0, : f.shape[0], : f.shape[1]] = f
    x = torch.from_numpy(canvas).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        ref = prepare_network(copy.deepcopy(net), "cpu", torch.float32)(x)[0][0]
        last = prepare_network(copy.deepcopy(net), "cpu", torch.float32, channels_last=True)(
            x.contiguous(memory_format=torch.channels_last))[0][0]
        plain = copy.deepcopy(net).to(torch.bfloat16)(x.bfloat16())[0][0].float()
        mixed = prepare_network(copy.deepcopy(net), "cpu", torch.bfloat16)(x.bfloat16())[0][0]
    torch.testing.assert_close(last, ref, rtol=1e-4, atol=1e-3)
    assert mixed.dtype == torch.float32
    keep = ref[4] > 0.25
    assert keep.sum() > 0

    def on_bf16_grid(o: torch.Tensor) -> float:
        return float((o[:4, keep] == o[:4, keep].bfloat16().float()).float().mean())

    def box_error(o: torch.Tensor) -> float:
        return float((o[:4, keep] - ref[:4, keep]).abs().mean())

    assert on_bf16_grid(plain) == 1.0 and on_bf16_grid(mixed) < 0.2
    assert box_error(mixed) < 0.75 * box_error(plain)


def test_dbscan_counts_and_labels_in_int32_same_labels() -> None:
    """Degrees and labels are int32 on the device (a bool tile summed, or a label tile selected,
    is written at 4 bytes per entry instead of 8); the labels are scikit-learn's exactly."""
    from sklearn.cluster import DBSCAN

    from tmor.model.cluster import _Engine, brute_blocks, dbscan_cosine, l2_normalize

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 16))
    x = np.concatenate([c + 0.25 * rng.standard_normal((120, 16)) for c in centres]
                       + [rng.standard_normal((80, 16))]).astype(np.float32)
    eps, ms = 0.12, 8
    eng = _Engine(l2_normalize(x), eps, "cpu", half=False)
    blocks = brute_blocks(len(x), 256)
    deg = eng.degrees(blocks)
    assert deg.dtype == torch.int32
    lab = eng.labels(deg >= ms, eng.union_cores(blocks, deg >= ms), None)
    assert lab.dtype == torch.int32
    ours = dbscan_cosine(x, eps, ms, backend="torch", device="cpu", block=256)
    ref = DBSCAN(eps=eps, min_samples=ms, metric="cosine", algorithm="brute").fit(x).labels_
    assert ours.labels.dtype == np.int64 and ours.n_clusters >= 4
    assert np.array_equal(ours.labels, ref)  # same numbering: smallest core point first
    assert np.array_equal(lab.numpy(), np.where(deg.numpy() >= ms, ref, -1))


def test_reader_pins_batches_for_a_cuda_run(window_corpus: str) -> None:
    """A CUDA run's reader pins its batches, so the trainer's non-blocking copies overlap (the
    DataLoader pins only where a GPU is there to take them)."""
    from tmor.shards.reader import make_loader
    from tmor.train.config import PretrainConfig
    from tmor.train.corpus import reader_config

    def cfg(device: str) -> PretrainConfig:
        return PretrainConfig(shards=window_corpus, device=device, num_workers=0,
                              epoch_samples=64, layout=None, channels=3, max_persons=1)

    assert reader_config(cfg("cuda:1")).pin_memory and reader_config(cfg("cuda")).pin_memory
    assert not reader_config(cfg("cpu")).pin_memory
    loader = make_loader(window_corpus, reader_config(cfg("cuda")))
    assert loader.dataloader().pin_memory == torch.cuda.is_available()
    assert next(iter(loader))["pose"].is_pinned() == torch.cuda.is_available()
