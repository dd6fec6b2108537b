"""How the command lines end on an error: one line on stderr and exit code 2 for every known
error (bad input, missing files, no plan, a stage that stopped, a model that cannot load); a
traceback only with ``--debug`` anywhere on the command line, or ``TMOR_DEBUG=1``."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
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
    plain = ("StageFailed", "NoPlan", "InputError", "DataError", "PluginUnavailable",
             "BadParameter", "ConfigError", "UnsafePickleError", "BadPickleError")
    if type(error).__name__ in plain or any(c.__name__ in plain for c in type(error).__mro__):
        return text
    return f"{type(error).__name__}: {text}"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _is_click(error: BaseException) -> bool:
    """typer.Exit / Abort / BadParameter: click's own control flow (Exit is a RuntimeError)."""
    return any(c.__module__.endswith(("click.exceptions", "typer.exceptions"))
               for c in type(error).__mro__)


def report(error: BaseException, prog: str) -> None:
    """Print ``error`` as the one line a user sees."""
    typer.echo(f"{prog}: error: {one_line(error)} (--debug or {DEBUG_ENV}=1 for the "
               "traceback)", err=True)


def guard_commands(app: typer.Typer, prog: str) -> typer.Typer:
    """Wrap every command of ``app``: a known error prints one line and exits 2, however the app
    is invoked (console script, ``python -m``, torchrun, typer's test runner)."""
    for command in app.registered_commands:
        command.callback = _guarded(command.callback, prog)
    return app


def _guarded(fn: Callable[..., Any], prog: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KNOWN_ERRORS as e:
            if _is_click(e) or debug_enabled():
                raise
            report(e, prog)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def run_app(app: typer.Typer, prog: str, argv: list[str] | None = None) -> None:
    """Run a typer app as ``prog`` and exit; ``--debug`` anywhere on the line turns on
    tracebacks. A known error escaping outside a command, and a usage error (an unknown option,
    a value that is not a number), print one line too."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"  # worker processes inherit it
    try:
        code = app(args=args, prog_name=prog, standalone_mode=False)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except Exception as e:
        if _is_click(e) and hasattr(e, "format_message"):  # click's usage errors
            if type(e).__name__ == "NoArgsIsHelpError":  # no command: typer printed the help
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            see = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"{prog}: error: {' '.join(e.format_message().split())}{see}", err=True)
            sys.exit(e.exit_code)
        if not isinstance(e, KNOWN_ERRORS) or debug_enabled():
            raise
        report(e, prog)
        sys.exit(EXIT_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


def debug_option(value: bool) -> None:
    """The app-level ``--debug`` flag (handled by :func:`run_app` wherever it is given)."""
    if value:
        os.environ[DEBUG_ENV] = "1"


def new_app(help: str) -> typer.Typer:
    """A typer app with the shared ``--debug`` callback (both CLIs are built this way)."""
    app = typer.Typer(help=help, no_args_is_help=True, add_completion=False)

    @app.callback()
    def _app_options(
        debug: bool = typer.Option(False, "--debug", help="show the traceback of an error "
                                   "(anywhere on the line; also TMOR_DEBUG=1)"),
    ) -> None:
        """Errors print one line and exit 2; --debug shows their traceback."""
        debug_option(debug)

    return app
