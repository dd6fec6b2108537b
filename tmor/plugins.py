"""One plug-in shape for models chosen by name (pose backends, video-language encoders).

A :class:`Registry` maps a name to ``"module:attribute"``; the module is imported only when the
name is used, so heavy packages (torch, ultralytics, open_clip) never load at CLI start-up.
Every failure to start a plugin is a :class:`~tmor.errors.PluginUnavailable` naming the fix.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tmor.errors import PluginUnavailable


class Registry:
    """Named plugins of one kind, resolved lazily from ``"module:attribute"`` targets."""

    def __init__(self, kind: str, targets: dict[str, str]):
        self.kind = kind
        self.targets = dict(targets)

    def __contains__(self, name: str) -> bool:
        return name in self.targets

    def __iter__(self):
        return iter(self.targets)

    def get(self, name: str) -> Any:
        """The attribute registered as ``name`` (a class or factory)."""
        if name not in self.targets:
            raise PluginUnavailable(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.targets)}"
            )
        module, _, attr = self.targets[name].partition(":")
        return getattr(importlib.import_module(module), attr)


def require(package: str, install: str, what: str = "this plugin") -> Any:
    """Import ``package`` or raise :class:`PluginUnavailable` saying how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise PluginUnavailable(
            f"{what} needs the Python package {package!r} ({e}); install it with: {install}"
        ) from e


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`PluginUnavailable`."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise PluginUnavailable(f"{what} not found: {str(p)!r}; provide a local model file")
    return p
