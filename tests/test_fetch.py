"""The fetch stage with real components: yt-dlp, ffmpeg, a range-capable HTTP server, real clips."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rangeserver import RangeServer  # noqa: E402

from tmor.errors import ErrorClass, SampleError  # noqa: E402
from tmor.pipeline.fetch import FetchConfig, FetchStage  # noqa: E402
from tmor.pipeline.fetch_errors import classify_exception, classify_text  # noqa: E402
from tmor.pipeline.fetch_ffmpeg import probe_clip, run_bounded  # noqa: E402
from tmor.pipeline.stage import Result, Sample  # noqa: E402

DATA = Path(os.environ.get("TMOR_SHARED_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))
VIDEOS = DATA / "videos"


def _need_videos() -> Path:
    if not (VIDEOS / "videos.csv").exists():
        pytest.skip(f"real test clips not found at {VIDEOS} (../shared/data/videos)")
    return VIDEOS


def _sample(key: str, source: str, kind: str, start: float | None, end: float | None) -> Sample:
    row = {"key": key, "source": source, "source_kind": kind, "start": start, "end": end,
           "label": None, "caption": None, "meta": "{}", "shard": 0}
    return Sample(key=key, row=row)


def _run(stage: FetchStage, samples: list[Sample]) -> dict[str, Result]:
    stage.setup()
    try:
        results = list(stage.process(iter(samples)))
    finally:
        stage.teardown()
    assert sorted(r.key for r in results) == sorted(s.key for s in samples)
    return {r.key: r for r in results}


def _config(**kw: object) -> FetchConfig:
    base = dict(retries=0, backoff_s=0.01, rate_limit_backoff_s=0.01, threads=1,
                timeout_s=60.0, io_timeout_s=5.0)
    base.update(kw)
    return FetchConfig(**base)  # type: ignore[arg-type]


def _probe_bytes(mp4: bytes) -> object:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(mp4)
        f.flush()
        return probe_clip(f.name, 30)


# ---- error classification on real messages --------------------------------------------------

REAL_MESSAGES = [
    ("ERROR: [youtube] dQw4w9WgXcQ: Sign in to confirm you\u2019re not a bot. Use "
     "--cookies-from-browser or --cookies for the authentication.", ErrorClass.RATE_LIMITED),
    ("ERROR: [youtube] abcdefghijk: Unable to download API page: HTTP Error 429: Too Many "
     "Requests (caused by <HTTPError 429: Too Many Requests>)", ErrorClass.RATE_LIMITED),
    ("ERROR: [youtube] abcdefghijk: Video unavailable. This content isn't available, try again "
     "later. The current session has been rate-limited by YouTube for up to an hour.",
     ErrorClass.RATE_LIMITED),
    ("ERROR: [youtube] abcdefghijk: Video unavailable. This video has been removed by the "
     "uploader", ErrorClass.PERMANENT),
    ("ERROR: [youtube] abcdefghijk: Private video. Sign in if you've been granted access to "
     "this video. Use --cookies-from-browser or --cookies for the authentication.",
     ErrorClass.PERMANENT),
    ("ERROR: [youtube] abcdefghijk: Video unavailable. This video is no longer available "
     "because the YouTube account associated with this video has been terminated.",
     ErrorClass.PERMANENT),
    ("ERROR: [youtube] abcdefghijk: Sign in to confirm your age. This video may be "
     "inappropriate for some users.", ErrorClass.PERMANENT),
    ("ERROR: [youtube] abcdefghijk: The uploader has not made this video available in your "
     "country", ErrorClass.PERMANENT),
    ("ERROR: Unsupported URL: https://example.com/about", ErrorClass.PERMANENT),
    ("ERROR: unable to download video data: HTTP Error 403: Forbidden", ErrorClass.PERMANENT),
    ("ERROR: [generic] missing: Unable to download webpage: HTTP Error 404: Not Found "
     "(caused by <HTTPError 404: Not Found>)", ErrorClass.PERMANENT),
    ("ERROR: [youtube] abcdefghijk: Unable to download API page: HTTP Error 503: Service "
     "Unavailable (caused by <HTTPError 503: Service Unavailable>)", ErrorClass.TRANSIENT),
    ("ERROR: [youtube] abcdefghijk: Unable to download webpage: <urlopen error [Errno -3] "
     "Temporary failure in name resolution>", ErrorClass.TRANSIENT),
    ("ERROR: [generic] x: Unable to download webpage: ('Connection aborted.', "
     "ConnectionResetError(104, 'Connection reset by peer'))", ErrorClass.TRANSIENT),
    ("ERROR: unable to download video data: IncompleteRead(6160384 bytes read, 3329081 more "
     "expected)", ErrorClass.TRANSIENT),
    ("[http @ 0x55d0] HTTP error 404 Not Found | http://h/x.mp4: Server returned 404 Not Found",
     ErrorClass.PERMANENT),
    ("http://h/x.mp4: Server returned 5XX Server Error reply", ErrorClass.TRANSIENT),
    ("[tcp @ 0x5601] Connection to tcp://10.0.0.1:80 failed: Connection timed out",
     ErrorClass.TRANSIENT),
    ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5595] moov atom not found | http://h/x.mp4: Invalid data "
     "found when processing input", ErrorClass.BAD_INPUT),
    ("Output file is empty, nothing was encoded", ErrorClass.BAD_INPUT),
]


@pytest.mark.parametrize("message,expected", REAL_MESSAGES)
def test_classify_real_messages(message: str, expected: ErrorClass) -> None:
    assert classify_text(message) is expected


def test_classify_exceptions() -> None:
    timeout = subprocess.TimeoutExpired(["ffmpeg"], 3)
    assert classify_exception(timeout).error_class is ErrorClass.TRANSIENT
    incomplete = http.client.IncompleteRead(b"abc", 10)
    assert classify_exception(incomplete).error_class is ErrorClass.TRANSIENT
    assert classify_exception(ConnectionResetError(104, "reset")).error_class is \
        ErrorClass.TRANSIENT
    own = SampleError(ErrorClass.BAD_INPUT, "x")
    assert classify_exception(own) is own


# ---- the range server ---------------------------------------------------------------------------

def test_rangeserver_ranges(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40
    (tmp_path / "blob.mp4").write_bytes(payload)
    with RangeServer(tmp_path) as srv:
        req = urllib.request.Request(srv.url("blob.mp4"), headers={"Range": "bytes=100-199"})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 100-199/{len(payload)}"
            assert resp.read() == payload[100:200]
        req = urllib.request.Request(srv.url("blob.mp4"), headers={"Range": "bytes=-10"})
        with urllib.request.urlopen(req) as resp:
            assert resp.read() == payload[-10:]
        head = urllib.request.Request(srv.url("blob.mp4"), method="HEAD")
        with urllib.request.urlopen(head) as resp:
            assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(payload)
            assert resp.headers["Content-Type"] == "video/mp4"
        for path, code, rng in [("nope.mp4", 404, None), ("blob.mp4", 416, "bytes=99999-")]:
            req = urllib.request.Request(srv.url(path), headers={"Range": rng} if rng else {})
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(req)
            assert exc.value.code == code
        assert srv.bytes_sent("blob.mp4") == 100 + 10  # HEAD and 416 send no body


# ---- fetching through yt-dlp from the range server --------------------------------------------

def test_fetch_through_ytdlp_with_failures(tmp_path: Path) -> None:
    videos = _need_videos()
    canary = tmp_path / "PWNED"
    odd = f"odd;rm -rf ~;$(touch {canary});`touch {canary}`;'q\".mp4"
    with RangeServer(videos) as srv:
        mp4 = (videos / "kinetics_tai_chi_2.mp4").read_bytes()
        srv.add_bytes("/broken/truncated.mp4", mp4[: int(len(mp4) * 0.3)])
        srv.add_bytes("/broken/notes.mp4", b"this is a text file, not a video\n" * 50)
        srv.add_bytes("/" + odd, (videos / "kinetics_clean_and_jerk.mp4").read_bytes())
        odd_url = srv.url(urllib.request.quote(odd, safe=";$()'`~/"))
        samples = [
            _sample("avi", srv.url("fallfree_fall_1_55_3.avi"), "url", 1.0, 2.5),
            _sample("avi2", srv.url("fallfree_fall_1_55_3.avi"), "url", 3.0, 4.0),
            _sample("mp4", srv.url("kinetics_tai_chi_2.mp4"), "url", 1.0, 2.5),
            _sample("portrait", srv.url("dribbling_basketball_portrait.mp4"), "url", 0.5, 2.0),
            _sample("odd", odd_url, "url", 1.0, 2.0),
            _sample("missing", srv.url("no_such_clip.mp4"), "url", 1.0, 2.5),
            _sample("truncated", srv.url("broken/truncated.mp4"), "url", 1.0, 2.5),
            _sample("text", srv.url("broken/notes.mp4"), "url", 1.0, 2.5),
            _sample("late", srv.url("kinetics_tai_chi_2.mp4"), "url", 20.0, 22.0),
            _sample("inverted", srv.url("kinetics_tai_chi_2.mp4"), "url", 2.0, 1.0),
        ]
        # small_source_mb=0: every source on the range path, even these short ones
        results = _run(FetchStage(_config(direct_urls=False, small_source_mb=0.0)), samples)
        log = srv.log

    expected_errors = {"missing": ErrorClass.PERMANENT, "truncated": ErrorClass.BAD_INPUT,
                       "text": ErrorClass.BAD_INPUT, "late": ErrorClass.BAD_INPUT,
                       "inverted": ErrorClass.BAD_INPUT}
    for key, error_class in expected_errors.items():
        assert not results[key].ok, key
        assert results[key].error.error_class is error_class, (key, str(results[key].error))

    for s in samples:
        if s.key in expected_errors:
            continue
        res = results[s.key]
        assert res.ok, (s.key, str(res.error))
        meta = json.loads(res.members["json"])
        info = _probe_bytes(res.members["mp4"])
        want = s.row["end"] - s.row["start"]
        assert abs(info.duration - want) <= 1.0 / info.fps + 1e-3, (s.key, info.duration, want)
        assert info.codec == "h264" and not info.has_audio
        assert meta["frames"] == info.frames and meta["duration"] == pytest.approx(info.duration)
        assert meta["source"] == s.row["source"] and meta["start"] == s.row["start"]
        assert meta["yt_dlp"] and meta["ffmpeg"] and meta["format_id"]
        assert meta["bytes_downloaded"] > 0 and res.record["bytes_downloaded"] > 0
        assert min(info.width, info.height) <= 360 and info.fps <= 30.0 + 1e-6
    portrait = _probe_bytes(results["portrait"].members["mp4"])
    assert (portrait.width, portrait.height) == (360, 640)  # 1080x1920 capped at short side 360
    assert not canary.exists()

    # each source resolved once by yt-dlp (its GET carries no Range header), probed once
    avi_log = [e for e in log if e.path == "/fallfree_fall_1_55_3.avi"]
    assert sum(1 for e in avi_log if e.range == "bytes=0-0") == 1
    assert all(json.loads(results[k].members["json"])["fetch_path"] == "range"
               for k in ("avi", "avi2", "mp4"))
    assert sum(1 for e in avi_log if e.range is None) == 1
    # range fetching: what the server sent for a 1.5 s and a 1 s range < the whole file
    avi_size = (videos / "fallfree_fall_1_55_3.avi").stat().st_size
    sent = sum(e.sent for e in avi_log)
    assert 0 < sent < avi_size, (sent, avi_size)
    assert any(e.status == 206 for e in avi_log)


def test_direct_urls_and_http_errors(tmp_path: Path) -> None:
    videos = _need_videos()
    with RangeServer(videos) as srv:
        samples = [
            _sample("direct", srv.url("ucf101_archery.avi"), "url", 1.0, 2.0),
            _sample("gone", srv.url("status/404/clip.mp4"), "url", 1.0, 2.0),
            _sample("forbidden", srv.url("status/403/clip.mp4"), "url", 1.0, 2.0),
            _sample("flaky", srv.url("status/503/clip.mp4"), "url", 1.0, 2.0),
            _sample("slow", srv.url("status/429/page"), "url", 1.0, 2.0),
            _sample("busy1", srv.url("status/429/busy.mp4"), "url", 1.0, 2.0),
            _sample("busy2", srv.url("status/429/busy.mp4"), "url", 3.0, 4.0),
        ]
        stage = FetchStage(_config(retries=1, clips_in_flight=1, small_source_mb=0.0))
        results = _run(stage, samples)
        log = srv.log
    assert results["direct"].ok, str(results["direct"].error)
    assert results["direct"].record["format_id"] == "direct"
    assert not any(e.path == "/ucf101_archery.avi" and e.range is None for e in log)  # no yt-dlp
    assert results["gone"].error.error_class is ErrorClass.PERMANENT
    assert results["forbidden"].error.error_class is ErrorClass.PERMANENT
    assert results["flaky"].error.error_class is ErrorClass.TRANSIENT
    # the transient failure was retried once in-process: two attempts reached the server
    assert sum(1 for e in log if e.path == "/status/503/clip.mp4") >= 2
    assert results["slow"].error.error_class is ErrorClass.RATE_LIMITED
    # the probe met the 429: the source's other clip is left for a retry without another request
    assert results["busy1"].error.error_class is ErrorClass.RATE_LIMITED
    assert results["busy2"].error.error_class is ErrorClass.RATE_LIMITED
    assert sum(1 for e in log if e.path == "/status/429/busy.mp4") == 1
    assert stage._rate_strikes == 2  # the worker backed off after each rate-limited source


def test_local_inputs_allowed_and_refused(tmp_path: Path) -> None:
    videos = _need_videos()
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "escape.mp4").symlink_to(videos / "kinetics_tai_chi_1.mp4")
    clip = videos / "ucf101_archery.avi"
    samples = [
        _sample("local", str(clip), "local", 1.0, 2.5),
        _sample("fileurl", clip.as_uri(), "url", 0.0, 1.0),
        _sample("escape", str(allowed / "escape.mp4"), "local", 1.0, 2.0),
        _sample("absent", str(videos / "not_there.mp4"), "local", 1.0, 2.0),
    ]
    results = _run(FetchStage(_config(allow_local=[str(videos)])), samples)
    for key, want in (("local", 1.5), ("fileurl", 1.0)):
        assert results[key].ok, str(results[key].error)
        info = _probe_bytes(results[key].members["mp4"])
        assert abs(info.duration - want) <= 1.0 / info.fps + 1e-3
        assert results[key].record["format_id"] == "local"
        assert not info.has_audio  # the source has an audio track: dropped by default
    with_audio = _run(FetchStage(_config(allow_local=[str(videos)], keep_audio=True)),
                      samples[:1])
    assert _probe_bytes(with_audio["local"].members["mp4"]).has_audio
    assert results["absent"].error.error_class is ErrorClass.PERMANENT
    assert results["escape"].ok  # a symlink whose real path lies under an allowed root

    # allowed only tmp/allowed: the symlink in it points outside, so it is refused too
    refused = _run(FetchStage(_config(allow_local=[str(allowed)])), samples[:3])
    for key in ("local", "fileurl", "escape"):
        assert refused[key].error.error_class is ErrorClass.PERMANENT
        assert "allow-local" in refused[key].error.message


def test_hung_server_is_a_transient_timeout() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)  # accepts connections into the backlog, never answers
    port = sock.getsockname()[1]
    try:
        samples = [_sample("direct", f"http://127.0.0.1:{port}/x.mp4", "url", 0.0, 1.0),
                   _sample("page", f"http://127.0.0.1:{port}/watch", "url", 0.0, 1.0)]
        results = _run(FetchStage(_config(io_timeout_s=1.0, timeout_s=4.0)), samples)
    finally:
        sock.close()
    for key in ("direct", "page"):
        assert results[key].error.error_class is ErrorClass.TRANSIENT, str(results[key].error)


def test_run_bounded_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    with pytest.raises(SampleError) as exc:
        run_bounded([sys.executable, "-c", code], timeout_s=2.0)
    assert exc.value.error_class is ErrorClass.TRANSIENT
    child = int(pidfile.read_text())
    for _ in range(50):  # the grandchild got SIGKILL with its group: gone or a zombie
        status = Path(f"/proc/{child}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail("grandchild survived the timeout")


def test_ytdlp_download_sections_method() -> None:
    videos = _need_videos()
    with RangeServer(videos) as srv:
        url = srv.url("kinetics_arm_wrestling.mp4")
        samples = [_sample("a", url, "url", 2.0, 3.5), _sample("b", url, "url", 6.0, 7.0)]
        results = _run(FetchStage(_config(direct_urls=False, method="yt-dlp")), samples)
        resolutions = sum(1 for e in srv.log if e.range is None)
    assert resolutions == 1  # the second clip reused the resolution (--load-info-json)
    for s in samples:
        res = results[s.key]
        assert res.ok, str(res.error)
        info = _probe_bytes(res.members["mp4"])
        want = s.row["end"] - s.row["start"]
        assert abs(info.duration - want) <= 1.0 / info.fps + 1e-3, (info.duration, want)
        assert info.codec == "h264" and not info.has_audio
        assert json.loads(res.members["json"])["method"] == "yt-dlp"


def test_format_choice_is_the_smallest_within_max_height() -> None:
    """yt-dlp's own selection over a YouTube-like format list (no network): a single http
    stream, video-only, within 360p, and of those the fewest bytes, whatever its codec."""
    import yt_dlp

    from tmor.pipeline.fetch_resolve import format_selector, format_sort

    def fmt(fid: str, height: int, vcodec: str, acodec: str, kbps: float, protocol: str = "https",
            ext: str = "mp4") -> dict:
        return {"format_id": fid, "url": f"https://media.example/{fid}", "height": height,
                "width": height * 16 // 9, "vcodec": vcodec, "acodec": acodec, "tbr": kbps,
                "filesize": int(kbps * 1000 / 8 * 420), "protocol": protocol, "ext": ext}

    formats = [fmt("18", 360, "avc1.42001E", "mp4a.40.2", 700),
               fmt("134", 360, "avc1.4D401E", "none", 500),
               fmt("396", 360, "av01.0.01M.08", "none", 420),
               fmt("243", 360, "vp9", "none", 350, ext="webm"),
               fmt("605", 360, "vp9", "none", 200, protocol="m3u8_native"),
               fmt("135", 480, "avc1.4D401F", "none", 900),
               fmt("133", 240, "avc1.4D4015", "none", 150)]
    info = {"id": "x", "title": "t", "extractor": "generic", "extractor_key": "Generic",
            "webpage_url": "https://example.org/x", "formats": formats, "duration": 420}
    chosen = {}
    for sort in (None, format_sort(360)):
        opts = {"quiet": True, "no_warnings": True, "format": format_selector(360),
                **({"format_sort": sort} if sort else {})}
        with yt_dlp.YoutubeDL(opts) as ydl:
            chosen[bool(sort)] = ydl.process_ie_result(dict(info), download=False)["format_id"]
    assert chosen == {False: "396", True: "243"}  # yt-dlp alone prefers AV1, 20% more bytes
    assert format_sort(None) == ["+size", "+br"]


def test_source_helpers_and_stage_pickles() -> None:
    import pickle

    from tmor.pipeline.fetch_resolve import format_selector, is_direct_video_url, web_url

    assert web_url("dQw4w9WgXcQ", "youtube") == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert web_url("https://youtu.be/dQw4w9WgXcQ", "youtube") == "https://youtu.be/dQw4w9WgXcQ"
    assert is_direct_video_url("https://host/a/b.MP4?sig=1")
    assert not is_direct_video_url("https://host/watch?v=x.mp4")
    assert not is_direct_video_url("ftp://host/a.mp4")
    assert format_selector(360).startswith("bv[height<=?360]")
    stage = FetchStage(_config(allow_local=["/data"]))
    clone = pickle.loads(pickle.dumps(stage))
    assert clone.config == stage.config and clone.name == "fetch" and clone.needs == {}
    card = json.loads(json.dumps(stage.card()))
    assert card["config"]["allow_local"] == ["/data"] and card["yt_dlp"] and card["ffmpeg"]
