"""The streaming reader: batch contract, worker / node splitting, URL kinds, safety, transforms."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from rich.console import Console

from tests._shards_data import EMBED_DIM, build_upstream, import_all, skeleton_files
from tmor.pipeline.executors import run_stage
from tmor.pipeline.pack import PackStage, finish_pack
from tmor.pipeline.runner import RunnerOptions
from tmor.shards.exporters import export_pyskl
from tmor.shards.reader import ReaderConfig, SkeletonDataset, TripletStream, make_loader
from tmor.shards.tario import UnsafeTarError
from tmor.skeleton.transforms import to_ctvm


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("packed"))
    build_upstream(root, shard_size=2)
    run_stage(PackStage(), root, RunnerOptions(progress=False), Console(file=io.StringIO()))
    finish_pack(root)
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("imported"))
    import_all(root, samples_per_shard=2)
    return root


def test_batches_of_documented_shapes_with_two_workers(packed):
    cfg = ReaderConfig(frames=16, batch_size=2, num_workers=2, epoch_samples=8, shuffle_buffer=4)
    loader = make_loader(f"{packed}/triplets/{{000000..000002}}.tar", cfg)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    keys = set()
    for b in batches:
        assert b["pose"].shape == (2, 2, 16, 17, 2) and b["pose"].dtype == torch.float32
        assert torch.isfinite(b["pose"]).all() and b["pose"].abs().sum() > 0
        assert b["video"].shape == (2, EMBED_DIM) and b["video"].dtype == torch.float32
        assert b["text"].shape == (2, EMBED_DIM) and b["has_text"].all()
        assert b["has_video"].dtype == torch.bool and b["has_video"].all()
        assert b["index"].dtype == torch.int64 and ((b["index"] >= 0) & (b["index"] < 6)).all()
        assert len(b["key"]) == 2 and all(isinstance(x, str) for x in b["label"])
        keys.update(b["key"])
    assert len(keys) >= 4  # both workers contributed distinct shards


def test_layout_conversion_3d_channels_and_absent_video(imported):
    cfg = ReaderConfig(frames=8, layout="coco17", channels=3, batch_size=2, num_workers=2,
                       shuffle_buffer=0, drop_last=False)
    batches = list(make_loader(f"{imported}/triplets", cfg))
    keys = [k for b in batches for k in b["key"]]
    assert len(keys) == len(set(keys)) == 6  # one pass, no duplicates, nothing lost
    for b in batches:
        assert b["pose"].shape == (2, 3, 8, 17, 2)
        assert b["video"].shape == (2, 0) and not b["has_video"].any()
    assert sorted(int(i) for b in batches for i in b["index"]) == list(range(6))


def test_fsspec_and_pipe_urls_read_the_same_samples(imported):
    local = f"{imported}/triplets/000000.tar"
    cfg = ReaderConfig(frames=4, layout=None, batch_size=1, num_workers=0, shuffle_buffer=0,
                       index_url=f"{imported}/triplets/index.parquet")
    want = [b["key"][0] for b in make_loader(local, cfg)]
    assert [b["key"][0] for b in make_loader(f"file://{local}", cfg)] == want
    got = list(make_loader(f"pipe:cat {local}", cfg))
    assert [b["key"][0] for b in got] == want and all(b["index"][0] >= 0 for b in got)


def test_node_split_is_disjoint_and_complete(imported):
    cfg = ReaderConfig(frames=4, layout=None, num_workers=0, shuffle_buffer=0)
    urls = [f"{imported}/triplets/{i:06d}.tar" for i in range(3)]
    seen = []
    for rank in range(2):
        stream = TripletStream(urls, cfg, (0, 0))
        stream.rank, stream.world = rank, 2
        seen.append([s["key"] for s in stream])
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) + len(seen[1]) == 6
    # a fixed epoch length: every rank yields exactly epoch_samples // world samples
    cfg.epoch_samples = 10
    counts = []
    for rank in range(2):
        stream = TripletStream(urls[:1], cfg, (0, 0))  # fewer shards than ranks: sample split
        stream.rank, stream.world = rank, 2
        counts.append(len(list(stream)))
    assert counts == [5, 5]


def test_reader_rejects_path_traversal(tmp_path, imported):
    bad = tmp_path / "000000.tar"
    with tarfile.open(bad, "w") as tar:
        data = b"{}"
        info = tarfile.TarInfo("../evil.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    cfg = ReaderConfig(num_workers=0, video_dim=0, text_dim=0, batch_size=1)
    with pytest.raises(UnsafeTarError, match=r"'\.\./evil\.json' has an absolute path or '\.\.'"):
        list(make_loader(str(bad), cfg))


def test_normalization_centres_hips_and_scales_torso():
    from tmor.shards.importers import kinect_triplet

    path = next(p for p in skeleton_files() if p.suffix == ".csv")
    t = kinect_triplet(str(path))
    t_len = t.keypoint.shape[1]
    out = to_ctvm(t.keypoint, t.keypoint_score, "ntu25", frames=t_len, max_persons=2)
    assert out.shape == (2, t_len, 25, 2) and not out[..., 1].any()  # second person padded
    xy = out[..., 0].transpose(1, 2, 0)  # (T, V, 2)
    hip = (xy[:, 12] + xy[:, 16]) / 2
    sho = (xy[:, 4] + xy[:, 8]) / 2
    np.testing.assert_allclose(hip.mean(axis=0), 0.0, atol=1e-4)
    assert abs(np.median(np.linalg.norm(sho - hip, axis=-1)) - 1.0) < 1e-3
    rng = np.random.default_rng(0)
    aug = to_ctvm(t.keypoint, t.keypoint_score, "ntu25", frames=32, rng=rng)
    assert aug.shape == (2, 32, 25, 2) and np.isfinite(aug).all()


def test_skeleton_dataset_over_exported_pyskl(tmp_path, imported):
    pkl = str(tmp_path / "x.pkl")
    export_pyskl(imported, pkl)
    with open(pkl, "rb") as f:
        data = pickle.load(f)
    ntu = [a for a in data["annotations"] if a["layout"] == "ntu25"]
    data["split"] = {"train": [a["frame_dir"] for a in ntu[:3]]}
    ds = SkeletonDataset(data, ReaderConfig(frames=16, layout="coco17"), split="train")
    assert len(ds) == 3
    item = ds[0]
    assert item["pose"].shape == (2, 16, 17, 2) and item["label"] >= 0
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    assert next(iter(loader))["pose"].shape == (3, 2, 16, 17, 2)


# -- issue 13: webdataset pipeline, skip-and-count, persistent workers, index, old shards -------
def _copy_shards(src: str, dst) -> str:
    import shutil

    out = dst / "triplets"
    shutil.copytree(f"{src}/triplets", out)
    return str(out)


def test_a_truncated_shard_is_skipped_and_counted(imported, tmp_path):
    from tmor.shards.index import read_index

    shards = _copy_shards(imported, tmp_path)
    want = read_index(shards)
    bad = f"{shards}/000001.tar"
    import tarfile

    with tarfile.open(bad) as tar:
        members = tar.getmembers()
    second = next(m for m in members if not m.name.startswith(members[0].name.split(".")[0]))
    data = open(bad, "rb").read()
    with open(bad, "wb") as f:
        f.write(data[: second.offset_data + 100])  # cut inside the second sample's first member
    cfg = ReaderConfig(frames=4, layout=None, batch_size=1, num_workers=2, shuffle_buffer=0,
                       drop_last=False)
    loader = make_loader(shards, cfg)
    keys = [k for b in loader for k in b["key"]]
    # every sample of the other shards, and the first (complete) sample of the cut one
    lost = [k for k, i in want.items() if k not in keys]
    assert len(keys) == len(set(keys)) == 5 and len(lost) == 1
    assert loader.skipped == {"samples": 0, "shards": 1}  # counted across both workers
    # a sample that does not decode is skipped and counted too; the run goes on
    evil = tmp_path / "one" / "000000.tar"
    evil.parent.mkdir()
    with tarfile.open(f"{shards}/000000.tar") as src, tarfile.open(evil, "w") as dst:
        first = next(m.name for m in src.getmembers() if m.name.endswith("pose.npz"))
        for m in src.getmembers():
            payload = src.extractfile(m).read()
            if m.name == first:
                payload = b"not a zip"
                m.size = len(payload)
            dst.addfile(m, io.BytesIO(payload))
    loader = make_loader(str(evil), ReaderConfig(frames=4, layout=None, batch_size=1,
                                                 num_workers=0, shuffle_buffer=0))
    assert len(list(loader)) == 1 and loader.skipped == {"samples": 1, "shards": 0}


def test_global_index_is_shard_offset_plus_position(imported):
    from tmor.shards.index import ShardTable, read_index

    want = read_index(f"{imported}/triplets")
    cfg = ReaderConfig(frames=4, layout=None, batch_size=2, num_workers=2, shuffle_buffer=4,
                       drop_last=False)
    loader = make_loader(f"{imported}/triplets", cfg)
    got = {k: int(i) for b in loader for k, i in zip(b["key"], b["index"], strict=True)}
    assert got == want
    # the reader holds one (offset, count) row per shard, not a map of keys
    stream = TripletStream(loader.stream.urls, cfg, (0, 0))
    list(stream)
    tables = list(stream._tables.values())
    assert len(tables) == 1 and isinstance(tables[0], ShardTable)
    assert tables[0].counts == {0: 2, 1: 2, 2: 2} and tables[0].offsets == {0: 0, 1: 2, 2: 4}


def test_workers_persist_across_epochs_and_see_the_epoch(imported):
    cfg = ReaderConfig(frames=4, layout=None, batch_size=1, num_workers=2, shuffle_buffer=6,
                       epoch_samples=6, seed=3)
    loader = make_loader(f"{imported}/triplets", cfg)
    orders, pids = [], []
    for epoch in range(3):
        loader.set_epoch(epoch)
        orders.append([b["key"][0] for b in loader])
        pids.append(sorted(w.pid for w in loader.dataloader()._iterator._workers))
    assert pids[0] == pids[1] == pids[2]  # forked once
    assert all(len(o) == 6 for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # the shared epoch reseeds the shuffle
    # the same epoch again gives the same order (deterministic per seed, epoch, rank, worker)
    loader.set_epoch(1)
    assert [b["key"][0] for b in loader] == orders[1]


def test_resampled_shards_keep_the_epoch_length(imported):
    cfg = ReaderConfig(frames=4, layout=None, batch_size=2, num_workers=2, shuffle_buffer=0,
                       epoch_samples=10, resample=True)
    loader = make_loader(f"{imported}/triplets", cfg)
    batches = list(loader)
    assert len(batches) == len(loader) == 4  # 5 per worker -> 2 full batches each
    with pytest.raises(ValueError, match="resample needs epoch_samples"):
        list(make_loader(f"{imported}/triplets", ReaderConfig(resample=True, num_workers=0,
                                                             epoch_samples=None)))


def test_old_deflated_shards_read_the_same_as_stored_ones(imported, tmp_path):
    """Shards packed before the format change (deflated pose.npz) decode to the same arrays."""
    import tarfile
    import zipfile

    from tmor.shards.codec import decode_triplet
    from tmor.shards.tario import read_tar_samples
    from tmor.skeleton.npz import decode_pose, npz_members

    src = f"{imported}/triplets/000000.tar"
    samples = read_tar_samples(src)
    for members in samples.values():  # new shards: stored members, sliced without inflate
        with zipfile.ZipFile(io.BytesIO(members["pose.npz"])) as z:
            assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    old = tmp_path / "000000.tar"
    with tarfile.open(old, "w") as tar:
        for key, members in samples.items():
            for ext, data in sorted(members.items()):
                if ext == "pose.npz":
                    arrays = {k: np.load(io.BytesIO(v)) for k, v in npz_members(data).items()}
                    buf = io.BytesIO()
                    np.savez_compressed(buf, **arrays)
                    data = buf.getvalue()
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    for key, members in read_tar_samples(str(old)).items():
        a, b = decode_triplet(key, members), decode_triplet(key, samples[key])
        assert np.array_equal(a.keypoint, b.keypoint) and a.layout == b.layout
        assert len(members["pose.npz"]) < len(samples[key]["pose.npz"])
        assert decode_pose(members["pose.npz"])["fps"] == decode_pose(samples[key]["pose.npz"])[
            "fps"]
    cfg = ReaderConfig(frames=4, layout=None, batch_size=1, num_workers=0, shuffle_buffer=0,
                       index_url=f"{imported}/triplets/index.parquet")
    new_batches = list(make_loader(src, cfg))
    old_batches = list(make_loader(str(old), cfg))
    for x, y in zip(new_batches, old_batches, strict=True):
        assert x["key"] == y["key"] and torch.equal(x["pose"], y["pose"])
        assert torch.equal(x["index"], y["index"])
