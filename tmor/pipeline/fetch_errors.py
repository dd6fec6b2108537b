"""Classify fetch failures (yt-dlp exceptions, ffmpeg / ffprobe stderr) into error classes.

A pure function of the message text, so it is unit-tested on real messages. The order of the
rules matters: rate limiting first (a 429 inside a long message must not read as "unavailable"),
then permanent refusals, then transient network failures, then undecodable input.
"""

from __future__ import annotations

import re
import socket
import subprocess
from http.client import IncompleteRead

from tmor.errors import ErrorClass, SampleError

_RULES: list[tuple[ErrorClass, re.Pattern[str]]] = [
    (ErrorClass.RATE_LIMITED, re.compile(
        r"HTTP Error 429|\b429\b.*Too Many Requests|Too Many Requests|confirm you.re not a bot"
        r"|rate[- ]limit|try again later", re.I)),
    (ErrorClass.PERMANENT, re.compile(
        r"HTTP Error (40[0-7]|410|451)\b|Server returned 40[0134]"
        r"|Server returned 4XX|404 Not Found|403 Forbidden|410 Gone"
        r"|Video unavailable|Private video|This video is private|has been removed"
        r"|no longer available|account .*terminated|available in your country"
        r"|blocked it in your country|Sign in to confirm your age|age.restricted"
        r"|members[- ]only|available to this channel.s members|requires payment"
        r"|Unsupported URL|is not a valid URL|file:// URLs are disabled|Unsupported scheme"
        r"|Requested format is not available|No video formats found|This live event will begin"
        r"|Premieres in|copyright claim|No such file or directory|not under --allow-local"
        r"|Protocol '.*' not on whitelist|Protocol not found", re.I)),
    (ErrorClass.TRANSIENT, re.compile(
        r"timed out|time-?out|Connection reset|Connection refused|Connection aborted"
        r"|IncompleteRead|Broken pipe|Remote end closed|RemoteDisconnected"
        r"|Temporary failure in name resolution|Name or service not known|Network is unreachable"
        r"|HTTP Error 5\d\d|Server returned 5XX|\b50[0-4]\b.*(Error|Unavailable|Gateway)"
        r"|Service Unavailable|Bad Gateway|Internal Server Error|SSL|EOF occurred"
        r"|Unable to download (webpage|API page|JSON)|Unable to extract|Got error:|killed"
        r"|Cannot allocate memory|Resource temporarily unavailable", re.I)),
    (ErrorClass.BAD_INPUT, re.compile(
        r"moov atom not found|Invalid data found when processing input|partial file"
        r"|could not find codec parameters|Output file is empty|nothing was encoded"
        r"|matches no streams|does not contain any stream|no video stream|zero duration"
        r"|zero frames|outside the video|end <= start|Invalid NAL|error while decoding"
        r"|Could not find tag for codec|unspecified size|Failed to open codec|truncated"
        r"|EBML header parsing failed|not a video|Invalid argument", re.I)),
]


def classify_text(text: str, default: ErrorClass = ErrorClass.TRANSIENT) -> ErrorClass:
    """The error class of a message (yt-dlp error string, ffmpeg stderr), or ``default``."""
    for error_class, pattern in _RULES:
        if pattern.search(text):
            return error_class
    return default


def classify_exception(exc: BaseException) -> SampleError:
    """A :class:`SampleError` for any exception raised while fetching one clip."""
    if isinstance(exc, SampleError):
        return exc
    if isinstance(exc, (subprocess.TimeoutExpired, TimeoutError, socket.timeout)):
        return SampleError(ErrorClass.TRANSIENT, f"timeout: {exc}")
    if isinstance(exc, (IncompleteRead, ConnectionError)):
        return SampleError(ErrorClass.TRANSIENT, f"{type(exc).__name__}: {exc}")
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return SampleError(classify_text(text), text[-2000:])
