"""Input lists, stable keys and the shard plan."""

from __future__ import annotations

import gzip
import json
import os

import pandas as pd
import pytest

from tmor.manifests.inputs import InputError, read_inputs
from tmor.manifests.keys import sample_key
from tmor.manifests.plan import plan_shards, read_plan, write_plan


def test_kinetics_style_csv_maps_columns_and_builds_youtube_urls(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "tai chi,abcdefghijk,10,20,train,0\n"
        "archery,zzzzzzzzzzz,0,10,val,1\n"
    )
    df, rep = read_inputs(str(p))
    assert rep == {"rows": 2, "duplicates": 0, "duplicate_examples": []}
    row = df.iloc[0]
    assert row["source"] == "https://www.youtube.com/watch?v=abcdefghijk"
    assert row["source_kind"] == "youtube"
    assert (row["start"], row["end"], row["label"]) == (10.0, 20.0, "tai chi")
    assert json.loads(row["meta"]) == {"is_cc": "0", "split": "train"}
    assert row["key"] == sample_key(row["source"], 10.0, 20.0)


def test_generic_jsonl_gz_with_mapping_and_relative_paths(tmp_path):
    p = tmp_path / "list.jsonl.gz"
    rows = [
        {"clip": "videos/a.mp4", "t0": 1.5, "t1": 3, "caption": "a man waves", "extra": 7},
        {"clip": "https://example.org/b.mp4", "t0": 0, "t1": 2, "caption": "x", "extra": 8},
    ]
    p.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    df, _ = read_inputs(str(p), {"url": "clip", "start": "t0", "end": "t1"})
    assert df["source"].tolist() == [str(tmp_path / "videos" / "a.mp4"), "https://example.org/b.mp4"]
    assert df["source_kind"].tolist() == ["local", "url"]
    assert df["caption"].tolist() == ["a man waves", "x"]
    assert json.loads(df.iloc[0]["meta"]) == {"extra": 7}


def test_duplicates_reported_once_and_missing_source_is_a_clear_error(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("url\tstart\tend\nhttp://h/x.mp4\t1\t2\nhttp://h/x.mp4\t1\t2\nhttp://h/x.mp4\t1\t3\n")
    df, rep = read_inputs(str(p))
    assert len(df) == 2 and rep["duplicates"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(InputError, match="no source column"):
        read_inputs(str(bad))
    with pytest.raises(InputError, match="not a number"):
        (tmp_path / "t.csv").write_text("url,start\nhttp://h/a.mp4,abc\n")
        read_inputs(str(tmp_path / "t.csv"))


def test_folder_input_lists_videos(videos_dir):
    df, rep = read_inputs(str(videos_dir))
    assert rep["rows"] == 13 and set(df["source_kind"]) == {"local"}
    assert df["start"].isna().all()


def test_plan_is_stable_under_reordering_and_extension(tmp_path):
    rows = pd.DataFrame(
        {"key": [sample_key(f"s{i // 3}", i, i + 1) for i in range(10)],
         "source": [f"s{i // 3}" for i in range(10)], "start": [float(i) for i in range(10)],
         "end": [float(i + 1) for i in range(10)]}
    )
    root = str(tmp_path / "c")
    r1 = write_plan(root, rows.iloc[:7], shard_size=3)
    assert r1.new_shards == [0, 1, 2] and r1.new_keys == 7
    before = read_plan(root)[["key", "shard"]]
    # reordered + extended: old keys keep their shard, new keys go to new shards
    r2 = write_plan(root, rows.iloc[::-1], shard_size=3)
    assert r2.new_keys == 3 and r2.already_planned == 7 and r2.new_shards == [3]
    after = read_plan(root)[["key", "shard"]]
    merged = before.merge(after, on="key", suffixes=("_a", "_b"))
    assert (merged["shard_a"] == merged["shard_b"]).all()
    assert after["key"].is_unique and len(after) == 10 and plan_shards(root) == [0, 1, 2, 3]
    # clips of one source share a shard on first planning
    first = read_plan(root)
    assert first.groupby("source")["shard"].nunique().loc[["s0", "s1"]].eq(1).all()


def test_a_plan_from_before_the_manifest_is_extended_not_overwritten(tmp_path):
    from tmor.manifests.plan import manifest_url

    rows = pd.DataFrame(
        {"key": [sample_key(f"s{i}", 0.0, 1.0) for i in range(6)],
         "source": [f"s{i}" for i in range(6)], "start": [0.0] * 6, "end": [1.0] * 6})
    root = str(tmp_path / "c")
    write_plan(root, rows.iloc[:4], shard_size=2)
    os.unlink(manifest_url(root))  # as an older tmor left it
    report = write_plan(root, rows, shard_size=2, fingerprint="list-v2")
    assert report.new_keys == 2 and report.new_shards == [2] and plan_shards(root) == [0, 1, 2]
    assert read_plan(root)["key"].is_unique
    again = write_plan(root, lambda: pytest.fail("a planned list is not read again"),
                       shard_size=2, fingerprint="list-v2")
    assert again.skipped and again.total_shards == 3


def test_keys_of_many_rows_are_the_keys_of_each_row():
    from tmor.manifests.keys import sample_keys

    sources = ["https://www.youtube.com/watch?v=abc", "/data/x.mp4", "s3://b/y.mp4", "z"]
    starts = [0.0, None, float("nan"), 12.3456]
    ends = [10.0, 5.0, None, 13.0]
    assert sample_keys(sources, starts, ends) == [
        sample_key(s, a, b) for s, a, b in zip(sources, starts, ends, strict=True)]


def test_blank_cells_times_and_extra_columns_read_as_before(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("youtube_id,time_start,time_end,label,split,note\n"
                    "abc, 1.5 ,3,  run ,train,\n"
                    ",,,,test, x \n"
                    "def,nan,4,,,\n")
    with pytest.raises(InputError, match="row 1: empty source"):
        read_inputs(str(path))
    path.write_text("youtube_id,url,time_start,time_end,label,split,note\n"
                    "abc,,1.5,3, run ,train,\n"
                    ",https://e.org/v.mp4,,,,test, x \n"
                    "def,,nan,4,,,\n")
    df, _ = read_inputs(str(path))
    assert df["source"].tolist() == ["https://www.youtube.com/watch?v=abc",
                                     "https://e.org/v.mp4", "https://www.youtube.com/watch?v=def"]
    assert df["source_kind"].tolist() == ["youtube", "url", "youtube"]
    assert df["start"].iloc[0] == 1.5 and pd.isna(df["start"].iloc[1])
    assert pd.isna(df["start"].iloc[2]) and df["end"].iloc[2] == 4.0
    assert df["label"].tolist() == ["run", None, None]
    assert [json.loads(m) for m in df["meta"]] == [{"split": "train"},
                                                  {"note": " x ", "split": "test"}, {}]
    bad = tmp_path / "bad.csv"
    bad.write_text("url,start\nhttps://e.org/a.mp4,soon\n")
    with pytest.raises(InputError, match="row 0: start='soon' is not a number"):
        read_inputs(str(bad))
