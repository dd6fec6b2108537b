"""The Python API (issue 23) on real skeletons: ``tmor.load_encoder(...).embed`` gives the vectors
``tmor-train embed`` writes (pre-train and transfer checkpoints, one sample and batches);
``tmor.read_triplets`` gives the shards' samples and arrays (also without torch); Hugging Face
``datasets`` and plain ``webdataset`` read every sample of a triplet shard; a named pyskl pickle
keeps its names and split through import -> export -> import; ``import tmor`` imports no torch.

Corpora: 12 real Penn Action sequences imported by ``tmor-data import --format penn_action``
(2D, penn13, converted to coco17 by the checkpoint) and the windows of the real NTU / FallFree
skeletons (3D, ntu25; tests/_windows.py)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _penn import penn_files, penn_pickle
from typer.testing import CliRunner

import tmor

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def penn(tmp_path_factory) -> str:
    """Triplet shards (5 samples each) of 12 real Penn Action sequences, imported by the CLI."""
    from tmor.cli.data import app

    root = tmp_path_factory.mktemp("penn")
    r = CliRunner().invoke(app, ["import", "--format", "penn_action", *penn_files(),
                                 "--root", str(root), "--samples-per-shard", "5"])
    assert r.exit_code == 0, r.output
    return str(root / "triplets")


@pytest.fixture(scope="module")
def stage1(penn: str, tmp_path_factory) -> str:
    """A pre-train checkpoint of a 1-step run on the Penn shards (reference UNIK width, T 16,
    one person, joints converted to coco17 by the reader)."""
    out = tmp_path_factory.mktemp("stage1")
    summary = tmor.run_pretrain(tmor.PretrainConfig(
        shards=penn, out_dir=str(out), losses=["mm"], frames=16, layout="coco17", channels=2,
        max_persons=1, batch_size=4, epoch_samples=8, epochs=1, max_steps=1, cluster=False,
        num_workers=0, shuffle_buffer=8, queue_size=16, ckpt_every=0, device="cpu"))
    assert summary["steps"] == 1
    return str(out / "last.pt")


def _tmor_train_embed(ckpt: str, shards: str, out: Path) -> dict[str, np.ndarray]:
    """``tmor-train embed`` -> {key: embedding}."""
    from tmor.cli.train import app

    r = CliRunner().invoke(app, ["embed", "--ckpt", ckpt, "--shards", shards, "--out", str(out),
                                 "--loader-workers", "0", "--device", "cpu", "--batch-size", "5"])
    assert r.exit_code == 0, r.output
    frame = pd.read_parquet(out)
    return {k: np.asarray(e, np.float32) for k, e in zip(frame["key"], frame["embedding"],
                                                         strict=True)}


def test_embed_of_a_pretrain_checkpoint_equals_tmor_train_embed(penn, stage1, tmp_path):
    want = _tmor_train_embed(stage1, penn, tmp_path / "emb.parquet")
    records = list(tmor.read_triplets(penn))
    assert len(want) == len(records) == 12
    enc = tmor.load_encoder(stage1)
    assert (enc.spec.frames, enc.spec.layout, enc.spec.channels) == (16, "coco17", 2)
    # one sample as pyskl arrays (M, T, V, C) in its own layout, converted by the encoder
    r = records[0]
    one = enc.embed(r["keypoint"], r["keypoint_score"], layout="penn13")
    assert one.shape == (1, 256) and one.dtype == np.float32
    np.testing.assert_allclose(one[0], want[r["key"]], atol=1e-4)
    # a batch of samples of different lengths (the records, each stating its layout)
    assert len({x["keypoint"].shape[1] for x in records}) > 1
    batch = enc.embed(records, batch_size=5)
    assert batch.shape == (12, 256)
    np.testing.assert_allclose(batch, np.stack([want[x["key"]] for x in records]), atol=1e-4)
    # a sample that is not the checkpoint's layout and does not say so is refused
    with pytest.raises(ValueError, match="13 joints but layout 'coco17' has 17"):
        enc.embed(r["keypoint"])


def test_embed_of_a_transfer_checkpoint_equals_tmor_train_embed(penn, stage1, tmp_path):
    cfg = tmor.ClassifyConfig(data=str(Path(penn).parent), mode="linear", init=stage1,
                              epochs=1, batch_size=4, out=str(tmp_path / "probe"),
                              device="cpu")
    tmor.run_classification(cfg, log=lambda *_: None)
    ckpt = str(tmp_path / "probe" / "best.pt")
    want = _tmor_train_embed(ckpt, penn, tmp_path / "emb.parquet")
    enc = tmor.load_encoder(ckpt)
    assert (enc.spec.frames, enc.spec.layout, enc.spec.max_persons) == (16, "coco17", 1)
    records = list(tmor.read_triplets(penn))
    got = enc.embed(records)
    np.testing.assert_allclose(got, np.stack([want[x["key"]] for x in records]), atol=1e-4)
    # the probe left the encoder frozen: the same vectors as the pre-train checkpoint's
    np.testing.assert_allclose(got, tmor.load_encoder(stage1).embed(records), atol=1e-5)


def test_embed_of_a_3d_batch_numpy_and_torch_equals_tmor_train_embed(window_corpus, tmp_path):
    import torch

    from tmor.model.checkpoint import save_checkpoint

    ckpt = str(tmp_path / "fresh.pt")  # a fresh encoder saved as pre-training saves one
    torch.manual_seed(0)
    cfg = tmor.PretrainConfig(frames=12, layout=None, channels=3, max_persons=1)
    save_checkpoint(ckpt, tmor.UNIK(3, 25, 1), None, cfg.to_dict())
    want = _tmor_train_embed(ckpt, window_corpus, tmp_path / "emb.parquet")
    records = list(tmor.read_triplets(window_corpus))[:40]
    kp3 = np.stack([r["keypoint_3d"] for r in records])  # (N, M, T, V, 3): pyskl's 3D
    score = np.stack([r["keypoint_score"] for r in records])
    assert kp3.shape == (40, 1, 16, 25, 3)
    enc = tmor.load_encoder(ckpt)
    expected = np.stack([want[r["key"]] for r in records])
    np.testing.assert_allclose(enc.embed(kp3, score, layout="ntu25"), expected, atol=1e-4)
    got = enc.embed(torch.from_numpy(kp3), torch.from_numpy(score), layout="ntu25")
    np.testing.assert_allclose(got, expected, atol=1e-4)
    with pytest.raises(ValueError, match="layout="):  # the checkpoint keeps the data's layout
        enc.embed(kp3[0], score[0])


def _tar_samples(url: str) -> list[tuple[str, dict]]:
    """The shard's samples read with Python's tarfile and numpy alone (not tmor's codec)."""
    import json

    out: dict[str, dict] = {}
    with tarfile.open(url) as tar:
        for m in tar.getmembers():
            key, _, ext = m.name.partition(".")
            out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    decoded = []
    for key, members in out.items():
        pose = np.load(io.BytesIO(members["pose.npz"]), allow_pickle=False)
        sample = {k: pose[k] for k in pose.files}
        sample["meta"] = json.loads(members["json"])
        sample["caption"] = members["txt"].decode()
        for ext in ("video.npy", "text.npy"):
            if ext in members:
                sample[ext] = np.load(io.BytesIO(members[ext]), allow_pickle=False)
        decoded.append((key, sample))
    return decoded


def _shards(folder: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).glob("*.tar"))


def test_read_triplets_count_and_arrays_equal_the_shards(window_corpus):
    shards = _shards(window_corpus)
    truth = [kv for url in shards for kv in _tar_samples(url)]
    got = list(tmor.read_triplets(window_corpus))
    assert len(got) == len(truth) == len(pd.read_parquet(Path(window_corpus) / "index.parquet"))
    for (key, t), r in zip(truth, got, strict=True):
        assert r["key"] == key and r["layout"] == str(t["layout"]) and r["fps"] == t["fps"]
        for name in ("keypoint", "keypoint_score", "keypoint_3d"):
            np.testing.assert_array_equal(r[name], t[name])
            assert r[name].dtype == np.float32
        np.testing.assert_array_equal(r["video"], t["video.npy"])
        np.testing.assert_array_equal(r["text"], t["text.npy"])
        assert r["video"].dtype == np.float16 and r["caption"] == t["caption"]
        assert r["meta"] == t["meta"]
    # a brace pattern and a list read the same; shuffling keeps the set, seeded
    pattern = window_corpus + "/{000000..000002}.tar"
    assert [r["key"] for r in tmor.read_triplets(pattern)] == [k for k, _ in truth]
    assert [r["key"] for r in tmor.read_triplets(shards[1:])] == [k for k, _ in truth[64:]]
    a = [r["key"] for r in tmor.read_triplets(shards, shuffle=True, seed=1, buffer_size=50)]
    b = [r["key"] for r in tmor.read_triplets(shards, shuffle=True, seed=1, buffer_size=50)]
    assert a == b and sorted(a) == sorted(k for k, _ in truth) and a != [k for k, _ in truth]
    with pytest.raises(FileNotFoundError, match="missing"):
        tmor.read_triplets(window_corpus + "/000009.tar")


def test_read_triplets_refuses_a_truncated_shard_or_skips_its_rest(window_corpus, tmp_path):
    from tmor.shards.tario import TruncatedTarError

    data = (Path(window_corpus) / "000000.tar").read_bytes()
    cut = tmp_path / "000000.tar"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedTarError, match="truncated"):
        list(tmor.read_triplets(str(cut)))
    kept = [r["key"] for r in tmor.read_triplets(str(cut), skip_bad=True)]
    whole = [r["key"] for r in tmor.read_triplets(str(Path(window_corpus) / "000000.tar"))]
    assert 0 < len(kept) < len(whole) and kept == whole[: len(kept)]


def test_read_triplets_of_skeleton_only_shards_leaves_out_what_is_absent(penn):
    r = next(tmor.read_triplets(penn))
    assert r["layout"] == "penn13" and r["keypoint"].shape[2:] == (13, 2)
    assert not {"video", "text", "keypoint_3d"} & set(r)
    assert r["caption"].startswith("a person ") and r["meta"]["benchmark"] == "penn_action"


def test_read_triplets_works_without_torch(window_corpus):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
        "import tmor\n"
        f"rows = list(tmor.read_triplets({window_corpus!r}))\n"
        "print(len(rows), rows[0]['keypoint'].shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "182"


def test_import_tmor_imports_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import sys, tmor; print('torch' in sys.modules, len(dir(tmor)))"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "False"
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in done.stderr.splitlines()]
    assert "tmor" in imported and not any(m.split(".")[0] == "torch" for m in imported)


def _assert_same_sample(row_pose: dict, row: dict, r: dict) -> None:
    for name in ("keypoint", "keypoint_score", "keypoint_3d"):
        if name in r:
            np.testing.assert_array_equal(np.asarray(row_pose[name], np.float32), r[name])
    assert str(np.asarray(row_pose["layout"])) == r["layout"]
    assert float(np.asarray(row_pose["fps"])) == r["fps"]
    for ext, name in (("video.npy", "video"), ("text.npy", "text")):
        if name in r:
            np.testing.assert_array_equal(np.asarray(row[ext], np.float16), r[name])
    assert row["txt"] == (r.get("caption") or "")


@pytest.mark.parametrize("corpus", ["window_corpus", "penn"])
def test_hugging_face_datasets_reads_every_sample(corpus, request, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    folder = request.getfixturevalue(corpus)
    ds = datasets.load_dataset("webdataset", data_files={"train": _shards(folder)},
                               split="train", cache_dir=str(tmp_path / "hf"))
    records = {r["key"]: r for r in tmor.read_triplets(folder)}
    assert ds.num_rows == len(records) and set(ds["__key__"]) == set(records)
    for row in ds:
        r = records[row["__key__"]]
        _assert_same_sample(row["pose.npz"], row, r)
        assert row["json"]["label"] == r["meta"]["label"]


def test_plain_webdataset_decodes_every_sample(window_corpus):
    import webdataset as wds

    records = {r["key"]: r for r in tmor.read_triplets(window_corpus)}
    seen = set()
    for row in wds.WebDataset(_shards(window_corpus), shardshuffle=False).decode():
        r = records[row["__key__"]]
        _assert_same_sample(row["pose.npz"], row, r)
        assert row["json"] == r["meta"]
        seen.add(row["__key__"])
    assert seen == set(records)


def test_named_pyskl_pickle_keeps_names_and_split_through_import_export_import(tmp_path):
    from tmor.cli.data import app
    from tmor.shards.card import read_corpus_card
    from tmor.shards.exporters import iter_triplets

    original = penn_pickle(tmp_path / "penn.pkl")
    names = [a["frame_dir"] for a in original["annotations"]]
    runner = CliRunner()
    r = runner.invoke(app, ["import", str(tmp_path / "penn.pkl"), "--layout", "penn13",
                            "--root", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["export", "--format", "pyskl", "--root", str(tmp_path / "a"),
                            "--out", str(tmp_path / "a.pkl")])
    assert r.exit_code == 0, r.output
    exported = pickle.loads((tmp_path / "a.pkl").read_bytes())
    assert [a["frame_dir"] for a in exported["annotations"]] == names
    assert exported["split"] == original["split"]
    for a, b in zip(original["annotations"], exported["annotations"], strict=True):
        np.testing.assert_array_equal(a["keypoint"], b["keypoint"])
        assert exported["label_names"][b["label"]] == str(a["label"])
    r = runner.invoke(app, ["import", str(tmp_path / "a.pkl"), "--layout", "penn13",
                            "--root", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    again = list(iter_triplets(str(tmp_path / "b")))
    assert [t.meta["frame_dir"] for t in again] == names
    assert read_corpus_card(str(tmp_path / "b"))["import"]["split"] == original["split"]
    assert [t.key for t in again] == [t.key for t in iter_triplets(str(tmp_path / "a"))]


def test_a_name_collision_is_refused_in_one_line_and_writes_nothing(tmp_path):
    from tmor.cli.data import app
    from tmor.shards.importers import triplet_from_annotation
    from tmor.shards.writer import write_triplet_shards

    data = penn_pickle(tmp_path / "penn.pkl")
    twin = dict(data["annotations"][1], frame_dir=data["annotations"][0]["frame_dir"],
                source="penn_action://elsewhere")  # another sample, the same name
    runner = CliRunner()
    twice = dict(data, annotations=[*data["annotations"], twin])
    (tmp_path / "twice.pkl").write_bytes(pickle.dumps(twice))
    r = runner.invoke(app, ["import", str(tmp_path / "twice.pkl"), "--layout", "penn13",
                            "--root", str(tmp_path / "a")])
    assert r.exit_code == 2 and "duplicate sample name '0001'" in r.output  # refused at import
    r = runner.invoke(app, ["import", str(tmp_path / "penn.pkl"), "--layout", "penn13",
                            "--root", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    # a corpus written another way (the library's shard writer) can still hold two samples of
    # one name: export refuses it instead of renaming one
    shards = sorted((tmp_path / "a" / "triplets").glob("*.tar"))
    write_triplet_shards(str(tmp_path / "a" / "triplets"),
                         [triplet_from_annotation(twin, "penn13", 30.0)], first_shard=len(shards))
    out = tmp_path / "a.pkl"
    r = runner.invoke(app, ["export", "--format", "pyskl", "--root", str(tmp_path / "a"),
                            "--out", str(out)])
    assert r.exit_code == 2 and not out.exists()
    (line,) = r.output.strip().splitlines()
    assert line.startswith("tmor-data: error: ") and "both named '0001'" in line
