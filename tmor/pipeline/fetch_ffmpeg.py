"""ffmpeg / ffprobe for the fetch stage: bounded subprocesses, the cut-and-normalize command,
parsing of what ffmpeg reports, and measurement of the output clip.

Every subprocess gets an argv list (never a shell), its own session (process group) and a
timeout; on expiry the whole group is killed, so no ffmpeg outlives its sample.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from functools import cache

from tmor.errors import ErrorClass, SampleError

#: ffmpeg protocols a web input may use (HLS segments are http(s), maybe AES "crypto")
WEB_PROTOCOLS = "http,https,tcp,tls,crypto,httpproxy"
LOCAL_PROTOCOLS = "file"


def run_bounded(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` in a new session with a timeout; kill its process group on expiry.

    Raises :class:`SampleError` (transient) on timeout; returns the completed process otherwise.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        name = os.path.basename(argv[0])
        raise SampleError(ErrorClass.TRANSIENT,
                          f"timeout: {name} ran past {timeout_s:g}s, killed") from None
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@cache
def ffmpeg_version(binary: str = "ffmpeg") -> str:
    """``ffmpeg -version``'s version string (e.g. "5.1.9-0+deb12u1")."""
    out = run_bounded([binary, "-hide_banner", "-version"], 30).stdout.decode(errors="replace")
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else "unknown"


@dataclass
class CutSpec:
    """One clip to cut out of ``url`` and how to normalize it."""

    url: str  # http(s) URL or "file:" + absolute path
    start: float
    duration: float | None  # None: to the end of the video
    out_path: str
    headers: dict[str, str] | None = None
    web: bool = True
    fps: float | None = None
    fps_cap: float = 30.0
    short_side: int | None = None
    max_short_side: int | None = None
    keep_audio: bool = False
    crf: int = 23
    preset: str = "veryfast"
    threads: int = 0
    io_timeout_s: float = 30.0
    recv_buffer: int | None = None  # bytes; caps how far the socket reads ahead of ffmpeg
    seek_keyframes: bool = True  # keyframes at the embed protocol's 8 frames (see below)


def seek_keyframes_expr(duration: float, num_frames: int = 8) -> str:
    """``-force_key_frames`` expression that makes frame ``k * (N // num_frames)`` a keyframe
    (k < num_frames), N being the output's frame count, estimated from ``duration`` and the output
    rate ``n / t`` (constant frame rate): the frames the embed stage reads (ViCLIP stride), so it
    seeks to each instead of decoding the clip. Frame 0 is always a keyframe."""
    step = f"trunc(round({duration:.6f}*n/t)/{num_frames})"
    return f"expr:if(gt(t,0),eq(mod(n,{step}),0)*lte(n,{num_frames - 1}*{step}),1)"


def _scale_filter(side: int, only_down: bool) -> str:
    target = f"min({{d}},{side})" if only_down else str(side)
    w = target.format(d="iw")
    h = target.format(d="ih")
    return (f"scale=w='if(lte(iw,ih),{w},-2)':h='if(lte(iw,ih),-2,{h})'"
            ",crop=trunc(iw/2)*2:trunc(ih/2)*2")


def cut_argv(spec: CutSpec, binary: str = "ffmpeg") -> list[str]:
    """The single ffmpeg call that reads only the range (``-ss`` before ``-i``: HTTP Range
    seeks), cuts it exactly (re-encode, not keyframe-snapped) and normalizes it: h264 yuv420p mp4,
    +faststart, fps / short side, audio dropped unless ``keep_audio``."""
    argv = [binary, "-nostdin", "-hide_banner", "-v", "verbose", "-y"]
    if spec.web:
        argv += ["-protocol_whitelist", WEB_PROTOCOLS,
                 "-rw_timeout", str(int(spec.io_timeout_s * 1e6))]
        if spec.headers:
            argv += ["-headers", "".join(f"{k}: {v}\r\n" for k, v in spec.headers.items())]
        if spec.recv_buffer:
            argv += ["-recv_buffer_size", str(spec.recv_buffer)]
    else:
        argv += ["-protocol_whitelist", LOCAL_PROTOCOLS]
    if spec.start > 0:
        argv += ["-ss", f"{spec.start:.6f}"]
    argv += ["-i", spec.url]
    if spec.duration is not None:
        argv += ["-t", f"{spec.duration:.6f}"]
    filters = []
    if spec.fps:
        filters.append(f"fps={spec.fps:g}")
    if spec.short_side:
        filters.append(_scale_filter(spec.short_side, only_down=False))
    elif spec.max_short_side:
        filters.append(_scale_filter(spec.max_short_side, only_down=True))
    else:
        filters.append("crop=trunc(iw/2)*2:trunc(ih/2)*2")
    argv += ["-map", "0:v:0", "-sn", "-dn", "-map_metadata", "-1", "-vf", ",".join(filters)]
    if not spec.fps and spec.fps_cap:
        argv += ["-fpsmax", f"{spec.fps_cap:g}"]
    if spec.seek_keyframes and spec.duration:
        argv += ["-force_key_frames", seek_keyframes_expr(spec.duration)]
    argv += ["-c:v", "libx264", "-preset", spec.preset, "-crf", str(spec.crf),
             "-pix_fmt", "yuv420p"]
    if spec.threads:
        argv += ["-threads", str(spec.threads)]
    if spec.keep_audio:
        argv += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "128k"]
    else:
        argv += ["-an"]
    argv += ["-movflags", "+faststart", "-f", "mp4", spec.out_path]
    return argv


_DURATION = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", re.M)
_STATS = re.compile(r"Statistics: (\d+) bytes (read|written)")


def input_duration(stderr: str) -> float | None:
    """The input's duration as ffmpeg printed it (``Duration: HH:MM:SS.ss``), if known."""
    m = _DURATION.search(stderr)
    if not m:
        return None
    h, mi, s = m.groups()
    return int(h) * 3600 + int(mi) * 60 + float(s)


def bytes_read(stderr: str) -> int:
    """Bytes ffmpeg read from its input, summed over its AVIO contexts (``-v verbose`` prints
    one ``Statistics`` line per context). The mp4 muxer's +faststart pass re-reads the output
    just before the output closes; that read is the one right before "bytes written": left out."""
    stats = [(int(n), kind) for n, kind in _STATS.findall(stderr)]
    written = next((i for i, (_, kind) in enumerate(stats) if kind == "written"), None)
    if written is not None and written > 0 and stats[written - 1][1] == "read":
        del stats[written - 1]
    return sum(n for n, kind in stats if kind == "read")


def error_excerpt(stderr: str, limit: int = 1500) -> str:
    """The lines of an ffmpeg log that explain a failure (not its stream listing)."""
    keep = [ln.strip() for ln in stderr.splitlines()
            if re.search(r"error|invalid|not found|failed|denied|refused|timed out|partial|"
                         r"could not|cannot|no such|empty|matches no|returned|whitelist|moov",
                         ln, re.I)]
    text = " | ".join(keep) if keep else " | ".join(stderr.strip().splitlines()[-5:])
    return text[-limit:]


@dataclass
class ClipInfo:
    """What ffprobe measured on an output clip."""

    codec: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    has_audio: bool


def _rate(text: str | None) -> float:
    if not text or text in ("0/0", "0"):
        return 0.0
    num, _, den = text.partition("/")
    return float(num) / float(den or 1)


def probe_clip(path: str, timeout_s: float, binary: str = "ffprobe") -> ClipInfo:
    """Codec, size, fps, frame count (packets counted) and duration of a clip's video stream."""
    argv = [binary, "-v", "error", "-count_packets", "-show_entries",
            "stream=codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,"
            "nb_read_packets,duration:format=duration", "-of", "json", "file:" + path]
    proc = run_bounded(argv, timeout_s)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        raise SampleError(ErrorClass.BAD_INPUT, f"ffprobe failed on output: {err[-500:]}")
    data = json.loads(proc.stdout or b"{}")
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if video is None:
        raise SampleError(ErrorClass.BAD_INPUT, "no video stream in the output")
    frames = int(video.get("nb_read_packets") or 0)
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    duration = float(video.get("duration") or data.get("format", {}).get("duration") or 0.0)
    return ClipInfo(codec=video.get("codec_name", ""), width=int(video.get("width") or 0),
                    height=int(video.get("height") or 0), fps=fps, frames=frames,
                    duration=duration,
                    has_audio=any(s.get("codec_type") == "audio" for s in streams))
