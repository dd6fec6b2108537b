"""The fetch stage's paths (issue 14): range reads through the loopback proxy, whole-file download
for servers that ignore Range and for small sources, clips in flight under a per-host connection
cap, honest error classes, and cookies that never reach ffmpeg's argv (issue 15)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rangeserver import RangeServer  # noqa: E402
from test_fetch import _config, _need_videos, _probe_bytes, _sample  # noqa: E402

import tmor.pipeline.fetch as fetch_mod  # noqa: E402
from tmor.errors import ErrorClass  # noqa: E402
from tmor.pipeline.fetch import FetchStage  # noqa: E402
from tmor.pipeline.fetch_ffmpeg import run_bounded  # noqa: E402
from tmor.pipeline.stage import Result, Sample  # noqa: E402

RANGES = [(0.4, 1.6), (2.1, 3.3)]


def _ffmpeg(*args: str) -> None:
    proc = run_bounded(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], 300)
    assert proc.returncode == 0, proc.stderr.decode()[-500:]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mp4 with the moov atom at the end, VP9 in webm and in mp4, and an mpeg4 avi."""
    videos = _need_videos()
    folder = tmp_path_factory.mktemp("sources")
    src = "file:" + str(videos / "kinetics_arm_wrestling.mp4")
    _ffmpeg("-i", src, "-map", "0:v:0", "-c", "copy", str(folder / "moov_end.mp4"))
    _ffmpeg("-i", src, "-t", "4", "-an", "-vf", "scale=-2:180", "-c:v", "libvpx-vp9",
            "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-g", "30",
            str(folder / "vp9.webm"))
    _ffmpeg("-i", "file:" + str(folder / "vp9.webm"), "-c", "copy", str(folder / "vp9.mp4"))
    (folder / "mpeg4.avi").write_bytes((videos / "fallfree_fall_1_55_3.avi").read_bytes())
    data = (folder / "moov_end.mp4").read_bytes()
    assert data.find(b"moov") > data.find(b"mdat") > 0  # the index really is at the end
    return folder


def _samples(srv: RangeServer, names: list[str]) -> list[Sample]:
    return [_sample(f"{n.replace('.', '_')}_{i}", srv.url(n), "url", a, b)
            for n in names for i, (a, b) in enumerate(RANGES)]


def _run_keep_tmp(stage: FetchStage, samples: list[Sample]) -> tuple[dict[str, Result], list]:
    """Run the stage; also return what was left in its temp folder before teardown."""
    stage.setup()
    try:
        results = {r.key: r for r in stage.process(iter(samples))}
        left = sorted(os.listdir(stage._tmp)) if stage._tmp else []
    finally:
        stage.teardown()
    assert sorted(results) == sorted(s.key for s in samples)
    return results, left


NAMES = ["moov_end.mp4", "vp9.webm", "vp9.mp4", "mpeg4.avi"]


@pytest.mark.parametrize("ignore_range", [False, True], ids=["range", "no-range"])
def test_every_format_exact_with_and_without_range(sources: Path, ignore_range: bool) -> None:
    with RangeServer(sources, ignore_range=ignore_range) as srv:
        samples = _samples(srv, NAMES)
        # small_source_mb=0: these short files take the range path whenever Range works;
        # read-ahead on, so that the byte count below also covers chunks fetched ahead
        cfg = _config(small_source_mb=0.0, readahead_chunks=1)
        results, left = _run_keep_tmp(FetchStage(cfg), samples)
        log = srv.log
    assert left == [], "a downloaded source or a clip file was left behind"
    for s in samples:
        res = results[s.key]
        assert res.ok, (s.key, str(res.error))
        info = _probe_bytes(res.members["mp4"])
        want = s.row["end"] - s.row["start"]
        # exact: the frames of [start, end) on the source's grid, so within one frame of it
        assert abs(info.frames - want * info.fps) < 1, (s.key, info.frames, want, info.fps)
        assert res.record["frames"] == info.frames
        assert res.record["fetch_path"] == ("whole-no-range" if ignore_range else "range")
    for name in NAMES:
        mine = [e for e in log if e.path == "/" + name]
        assert sum(1 for e in mine if e.range == "bytes=0-0") == 1  # probed once per source
        if ignore_range:  # probe + one whole download, shared by both clips
            assert len(mine) == 2 and all(e.status == 200 for e in mine)
        else:  # only exact ranges, and what the proxy counted is what the server sent
            assert all(e.status == 206 for e in mine)
            pulled = sum(results[f"{name.replace('.', '_')}_{i}"].record["bytes_downloaded"]
                         for i in range(len(RANGES)))
            assert pulled == sum(e.sent for e in mine) - 1


def test_small_sources_are_read_whole(sources: Path) -> None:
    with RangeServer(sources) as srv:
        samples = _samples(srv, ["moov_end.mp4"])
        results, _ = _run_keep_tmp(FetchStage(_config()), samples)  # default: <= 1 MB is small
        log = srv.log
    size = (sources / "moov_end.mp4").stat().st_size
    assert size < 1e6
    assert {r.record["fetch_path"] for r in results.values()} == {"whole-small"}
    assert all(r.ok for r in results.values())
    gets = [e for e in log if e.range is None]
    assert len(gets) == 1 and gets[0].sent == size  # one download for both clips


def test_whole_download_is_bounded(sources: Path) -> None:
    with RangeServer(sources, ignore_range=True) as srv:
        samples = _samples(srv, ["mpeg4.avi"])
        results, left = _run_keep_tmp(FetchStage(_config(max_source_mb=0.5)), samples)
    assert left == []
    for res in results.values():
        assert res.error.error_class is ErrorClass.PERMANENT
        assert "--max-source-mb" in res.error.message


@pytest.mark.parametrize("ignore_range,small_mb,path", [
    (False, 0.0, "range"), (False, 1.0, "whole-small"), (True, 0.0, "whole-no-range")])
def test_truncated_transfer_is_transient(sources: Path, ignore_range: bool, small_mb: float,
                                         path: str) -> None:
    with RangeServer(sources, ignore_range=ignore_range) as srv:
        # every response of /drop/20000/ promises its whole body and closes after 20,000 bytes
        samples = [_sample(f"cut_{i}", srv.url("drop/20000/moov_end.mp4"), "url", a, b)
                   for i, (a, b) in enumerate(RANGES)]
        results, left = _run_keep_tmp(FetchStage(_config(small_source_mb=small_mb)), samples)
    assert left == []
    for res in results.values():
        assert not res.ok
        assert res.error.error_class is ErrorClass.TRANSIENT, (path, str(res.error))
        assert "truncated transfer" in res.error.message, res.error.message


def test_clips_in_flight_under_a_host_cap(sources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def counting(argv: list[str], timeout_s: float):  # type: ignore[no-untyped-def]
        cut = "-i" in argv
        if cut:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
        try:
            return run_bounded(argv, timeout_s)
        finally:
            if cut:
                with lock:
                    state["now"] -= 1

    monkeypatch.setattr(fetch_mod, "run_bounded", counting)
    names = ["moov_end.mp4", "vp9.mp4", "mpeg4.avi"]
    # a slow link (300 kB/s per connection) keeps every clip waiting on the network
    with RangeServer(sources, rate_bps=300_000) as srv:
        samples = _samples(srv, names)
        cfg = _config(small_source_mb=0.0, clips_in_flight=4, per_host_connections=2)
        results, _ = _run_keep_tmp(FetchStage(cfg), samples)
        peak_requests = srv.peak_requests
    assert all(r.ok for r in results.values()), [str(r.error) for r in results.values()]
    assert 2 <= state["peak"] <= 4  # clips overlapped, never more than clips_in_flight
    assert peak_requests <= 2  # the host never saw more than its connection cap


def test_cookies_reach_the_server_but_never_ffmpeg_argv(
        sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-cookie-value"
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n"
                       f"127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{secret}\n")
    argvs: list[list[str]] = []

    def recording(argv: list[str], timeout_s: float):  # type: ignore[no-untyped-def]
        argvs.append(list(argv))
        return run_bounded(argv, timeout_s)

    monkeypatch.setattr(fetch_mod, "run_bounded", recording)
    with RangeServer(sources) as srv:
        samples = _samples(srv, ["moov_end.mp4"])
        cfg = _config(direct_urls=False, small_source_mb=0.0,
                      ytdlp_options={"cookiefile": str(cookies)})
        results, _ = _run_keep_tmp(FetchStage(cfg), samples)
        log = srv.log
    assert all(r.ok for r in results.values()), [str(r.error) for r in results.values()]
    ranged = [e for e in log if e.status == 206]
    assert ranged and all(e.cookie == f"session={secret}" for e in ranged)
    cuts = [a for a in argvs if "-i" in a]
    assert len(cuts) == len(samples)
    assert not any(secret in arg or "Cookie" in arg for a in argvs for arg in a)
    assert all(a[a.index("-i") + 1].startswith("http://127.0.0.1:") for a in cuts)
    assert not any("moov_end" in a[a.index("-i") + 1] for a in cuts)  # the proxy's URL only


def test_hls_manifest_is_cut_by_ffmpeg_itself(sources: Path, tmp_path: Path) -> None:
    hls = tmp_path / "hls"
    hls.mkdir()
    _ffmpeg("-i", "file:" + str(sources / "moov_end.mp4"), "-c", "copy", "-f", "hls",
            "-hls_time", "1", "-hls_playlist_type", "vod", str(hls / "index.m3u8"))
    with RangeServer(hls) as srv:
        samples = [_sample("hls", srv.url("index.m3u8"), "url", 1.0, 2.5)]
        results, left = _run_keep_tmp(FetchStage(_config(direct_urls=False)), samples)
    res = results["hls"]
    assert res.ok, str(res.error)
    assert res.record["fetch_path"] == "stream" and left == []
    info = _probe_bytes(res.members["mp4"])
    assert abs(info.frames - 1.5 * info.fps) <= 1  # MPEG-TS timestamps: within a frame
