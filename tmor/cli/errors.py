"""How the command lines end on an error: one line on stderr and exit code 2 for every known
error (bad input, missing files, no plan, a stage that stopped, a model that cannot load); a
traceback only with ``--debug`` anywhere on the command line, or ``TMOR_DEBUG=1``."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from tmor.errors import PluginUnavailable, SampleError

#: errors a user can act on from their message; anything else is a bug and keeps its traceback
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, RuntimeError, ImportError, LookupError, PluginUnavailable, SampleError,
)
EXIT_ERROR = 2
DEBUG_ENV = "TMOR_DEBUG"


def one_line(error: BaseException) -> str:
    """The error as one line: its message with whitespace collapsed; the class name is kept
    for errors whose message alone may not say what happened."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, KeyError):
        text = text.strip("'\"")
    plain = ("StageFailed", "NoPlan", "InputError", "PluginUnavailable", "BadParameter")
    if type(error).__name__ in plain or any(c.__name__ in plain for c in type(error).__mro__):
        return text
    return f"{type(error).__name__}: {text}"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_app(app: typer.Typer, prog: str, argv: list[str] | None = None) -> Any:
    """Run a typer app as ``prog``: known errors -> one stderr line, exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"  # worker processes inherit it
    try:
        return app(args=args, prog_name=prog)
    except KNOWN_ERRORS as e:
        if debug_enabled():
            raise
        hint = "" if isinstance(e, SystemExit) else f" (rerun with --debug or {DEBUG_ENV}=1 " \
            "for the traceback)"
        typer.echo(f"{prog}: error: {one_line(e)}{hint}", err=True)
        sys.exit(EXIT_ERROR)


def debug_option(value: bool) -> None:
    """The app-level ``--debug`` flag (handled by :func:`run_app` wherever it is given)."""
    if value:
        os.environ[DEBUG_ENV] = "1"
