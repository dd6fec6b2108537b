"""pack: join hand-made fetch / pose / caption / embed outputs (real skeletons) into triplets."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
from rich.console import Console

from tests._shards_data import EMBED_DIM, build_upstream, skeleton_files
from tmor.manifests import ledger as L
from tmor.pipeline.executors import run_stage
from tmor.pipeline.pack import PackConfig, PackStage, finish_pack
from tmor.pipeline.runner import RunnerOptions
from tmor.pipeline.stage import Sample
from tmor.shards.card import read_corpus_card
from tmor.shards.codec import decode_triplet
from tmor.shards.index import shard_urls
from tmor.shards.tario import read_tar_samples
from tmor.shards.validate import validate


def _run(stage: PackStage, root: str) -> dict:
    return run_stage(stage, root, RunnerOptions(progress=False), Console(file=io.StringIO()))


def test_pack_joins_filters_indexes_and_validates(tmp_path):
    root = str(tmp_path / "corpus")
    keys = build_upstream(root, low_score="Non-fall-2-45-1_Skeleton",
                          short="ntu60_A005_drop", pose_failed="Fall-1-19-4_Skeleton")
    _run(PackStage(PackConfig()), root)

    ledger = L.read_stage_ledgers(root, "triplets")
    # the sample whose pose failed never reaches pack; the other five are committed
    assert set(ledger["key"]) == set(keys.values()) - {keys["Fall-1-19-4_Skeleton"]}
    filtered = dict(zip(ledger["key"], ledger["filtered"], strict=True))
    assert filtered[keys["Non-fall-2-45-1_Skeleton"]] == "min_mean_score"
    assert filtered[keys["ntu60_A005_drop"]] == "min_frames_with_person"
    flags = json.loads(ledger.set_index("key").loc[keys["ntu60_A005_drop"], "flags"])
    assert flags == ["filtered:min_frames_with_person"]

    samples: dict = {}
    for url in shard_urls(f"{root}/triplets"):
        samples.update(read_tar_samples(url))
    kept = {keys[s] for s in ("Fall-1-55-3_Skeleton", "Non-fall-1-70-3_Skeleton",
                              "fsd10_class27")}
    assert set(samples) == kept
    for key, members in samples.items():
        assert set(members) == {"pose.npz", "video.npy", "text.npy", "txt", "json"}
        t = decode_triplet(key, members)
        assert t.layout == "coco17" and t.keypoint.shape[2] == 17
        assert t.video.dtype == np.float16 and t.video.shape == (EMBED_DIM,)
        assert t.caption.startswith("a person is ")
        assert t.meta["has_video"] and t.meta["embed_model"] == "tiny"
        assert t.meta["pose_model"] == "yolo11n-pose"

    section = finish_pack(root)
    assert section["samples"] == 3
    assert section["filtered"] == {"min_mean_score": 1, "min_frames_with_person": 1}
    assert section["video_dim"] == EMBED_DIM and section["filters"]["min_mean_score"] == 0.2
    assert read_corpus_card(root)["triplets"]["index"]["samples"] == 3
    index = pd.read_parquet(f"{root}/triplets/index.parquet")
    assert sorted(index["index"]) == [0, 1, 2] and set(index["key"]) == kept
    assert 0 < section["hours"] < 0.1
    report = validate(root)
    assert report.ok, report.defects


def test_pack_rerun_skips_committed_shards(tmp_path):
    root = str(tmp_path / "corpus")
    build_upstream(root)
    first = _run(PackStage(), root)
    tars = {u: open(u, "rb").read() for u in shard_urls(f"{root}/triplets")}
    again = _run(PackStage(), root)
    assert first["this_run"]["processed"] == 6 and again["this_run"]["processed"] == 0
    assert tars == {u: open(u, "rb").read() for u in shard_urls(f"{root}/triplets")}
    ledger = L.read_stage_ledgers(root, "triplets")
    assert (ledger["clip_seconds"] > 1).all()  # clip length, apart from the runner's timing


def test_pack_similarity_filter_and_skeleton_only_mode(tmp_path):
    root = str(tmp_path / "corpus")
    keys = build_upstream(root)
    key = keys["fsd10_class27"]
    shard = next(s for s in (0, 1) if key in L.ok_records(root, "pose", s))
    pose = read_tar_samples(L.tar_url(root, "pose", shard))[key]
    embed = read_tar_samples(L.tar_url(root, "embed", shard))[key]
    row = {"key": key, "source": "x", "start": None, "end": None, "label": "skating",
           "caption": None, "meta": "{}", "shard": shard}

    strict = PackStage(PackConfig(min_video_text_sim=0.5))
    sample = Sample(key, row, records={"embed": {"video_text_sim": 0.3}, "caption": {}},
                    members={"pose": pose, "embed": embed})
    (res,) = strict.process(iter([sample]))
    assert res.ok and res.members == {} and res.record["filtered"] == "min_video_text_sim"

    skel = PackStage(PackConfig(require_embed=False))
    assert "embed" not in skel.needs and "embed" in PackStage.needs
    (res,) = skel.process(iter([Sample(key, row, members={"pose": pose})]))
    assert res.ok and res.record["filtered"] is None
    t = decode_triplet(key, res.members)
    assert t.video is None and t.text is None and t.meta["has_video"] is False
    assert t.caption == "a person skating."
    assert "video.npy" not in res.members


def test_pack_reports_unreadable_pose_as_bad_input(tmp_path):
    skeleton_files()  # skip without the real data, like the other tests
    row = {"key": "k", "source": "x", "label": None, "caption": None}
    (res,) = PackStage().process(iter([Sample("k", row, members={"pose": {"pose.npz": b"xx"}})]))
    assert not res.ok and res.error.error_class.value == "bad_input"


def test_pack_command_finishes_once_with_the_filters_used(tmp_path):
    """`tmor-data pack` (run_registered) writes the card with the filters given on the command
    line, and a rerun over the same committed ledgers does not finish again."""
    from tmor.pipeline.runner import RunnerOptions as Opts
    from tmor.pipeline.stages import get_stage, run_registered

    root = str(tmp_path / "corpus")
    build_upstream(root)
    spec = get_stage("pack")
    quiet = Console(file=io.StringIO())
    run_registered(spec, root, {"min_seconds": 0.25, "min_mean_score": 0.0}, Opts(progress=False),
                   quiet)
    card = read_corpus_card(root)
    filters = card["triplets"]["filters"]
    assert filters["min_seconds"] == 0.25 and filters["min_mean_score"] == 0.0
    stamp = card["finished"]["triplets"]
    (tmp_path / "corpus" / "triplets" / "index.parquet").unlink()
    run_registered(spec, root, {"min_seconds": 0.25}, Opts(progress=False), quiet)
    assert not (tmp_path / "corpus" / "triplets" / "index.parquet").exists()  # not finished again
    assert read_corpus_card(root)["finished"]["triplets"] == stamp
