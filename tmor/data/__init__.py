"""Data files shipped with the package (action-name vocabulary for zero-shot captions)."""

from __future__ import annotations

from importlib import resources


def load_vocabulary(path: str | None = None) -> list[str]:
    """Action names, one a line (blank lines and ``#`` comments skipped), in file order, unique.

    ``path`` None reads the packaged Kinetics-700-sized list ``tmor/data/actions.txt``.
    """
    if path is None:
        text = resources.files(__package__).joinpath("actions.txt").read_text(encoding="utf-8")
    else:
        from tmor import fsio

        text = fsio.read_bytes(path).decode("utf-8")
    names: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        name = line.strip()
        if name and not name.startswith("#") and name not in seen:
            seen.add(name)
            names.append(name)
    return names
