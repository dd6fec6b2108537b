"""Per-sample failure classes shared by every stage."""

from __future__ import annotations

from enum import Enum


class ErrorClass(str, Enum):
    """Why a sample failed; decides whether ``--retry-failed`` tries it again."""

    PERMANENT = "permanent"  # private / removed / 404 / unsupported: never retried
    TRANSIENT = "transient"  # timeouts, broken connections, unexpected crashes: retried
    RATE_LIMITED = "rate_limited"  # 429, bot checks: retried, and the worker backs off
    BAD_INPUT = "bad_input"  # unreadable, zero duration, range outside the video

    @property
    def retryable(self) -> bool:
        return self in (ErrorClass.TRANSIENT, ErrorClass.RATE_LIMITED)


RETRYABLE = frozenset(c.value for c in ErrorClass if c.retryable)


class SampleError(Exception):
    """A classified failure of one sample; the stage records it and the run goes on."""

    def __init__(self, error_class: ErrorClass | str, message: str):
        super().__init__(message)
        self.error_class = ErrorClass(error_class)
        self.message = message

    def __str__(self) -> str:
        return f"{self.error_class.value}: {self.message}"


class PluginUnavailable(RuntimeError):
    """A model plugin (pose backend, video-language encoder) cannot start: unknown name, missing
    package, or missing / unreadable model file. The message says what to install or provide."""
