"""Real defaults in ``--help``: each command option that leaves its value to the typed config
(CLI default None, so that a YAML file can set it) shows the config dataclass's own default.

The defaults are read from the config module's source (``ast``), not by importing it, so that
``--help`` stays instant; ``tests/test_cli.py`` checks them against the imported classes.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]
_TRAILING_BRACKET = re.compile(r"\s*\[([^\[\]]*)\]\s*$")
_NO_DEFAULT = object()


@functools.cache
def config_defaults(module: str, cls: str) -> dict[str, Any]:
    """field -> literal default of dataclass ``cls`` in ``module`` (fields whose default is not
    a literal, e.g. ``field(default_factory=...)``, are left out)."""
    rel = Path(*module.split(".")[1:])
    path = PACKAGE / rel.with_suffix(".py")
    if not path.exists():
        path = PACKAGE / rel / "__init__.py"
    tree = ast.parse(path.read_text())
    constants: dict[str, Any] = {}  # module-level NAME = literal, for defaults that name one
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            else getattr(node, "target", None) if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
            try:
                constants[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
        if isinstance(node, ast.ClassDef) and node.name == cls:
            out = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) \
                        and item.value is not None:
                    if isinstance(item.value, ast.Name) and item.value.id in constants:
                        out[item.target.id] = constants[item.value.id]
                        continue
                    try:
                        out[item.target.id] = ast.literal_eval(item.value)
                    except ValueError:
                        continue
            return out
    raise LookupError(f"{module}: no class {cls}")


def show(value: Any) -> str:
    """A default as the help shows it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def with_default(help_text: str, value: Any) -> str:
    """``help_text`` ending in ``[default: value]`` (a hand-written trailing ``[...]`` replaced)."""
    text = _TRAILING_BRACKET.sub("", help_text or "")
    return f"{text} [default: {show(value)}]".strip()


def describe_default(help_text: str) -> str:
    """A hand-written trailing ``[text]`` (a default the config cannot state, e.g. "the clip's")
    written as ``[default: text]``."""
    m = _TRAILING_BRACKET.search(help_text or "")
    if not m or m.group(1).startswith("default:"):
        return help_text
    return _TRAILING_BRACKET.sub(f" [default: {m.group(1)}]", help_text)


def defaults_from(module: str, cls: str, fields: dict[str, str] | None = None
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command: every option whose CLI default is None and that names a field
    of the config (``fields`` maps parameter -> field where they differ) shows that field's
    default in its help; other None options get their hand-written ``[...]`` as a default."""
    fields = fields or {}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        known = config_defaults(module, cls)
        for p in inspect.signature(fn).parameters.values():
            info = p.default
            if not hasattr(info, "help") or getattr(info, "default", _NO_DEFAULT) is not None:
                continue
            value = known.get(fields.get(p.name, p.name), _NO_DEFAULT)
            if value is not _NO_DEFAULT and value is not None:
                info.help = with_default(info.help, value)
            else:
                info.help = describe_default(info.help)
        return fn

    return decorate


def escape_markup(app: Any) -> Any:
    """Finish the help of ``app``'s options: flags that are off say ``[default: no]``, and ``[``
    is escaped so that Rich shows ``[default: ...]`` and other bracketed text instead of taking
    it as a style tag."""
    for command in app.registered_commands:
        for p in inspect.signature(command.callback).parameters.values():
            info = p.default
            text = getattr(info, "help", None)
            if not isinstance(text, str):
                continue
            if getattr(info, "default", None) is False and "[default:" not in text:
                text = f"{text} [default: no]"
            info.help = re.sub(r"(?<!\\)\[", r"\\[", text)
    return app
