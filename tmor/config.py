"""Typed configs from YAML files and command-line overrides.

Every CLI option is a field of a dataclass config; a YAML file (``--config run.yaml``) sets any of
them under a section named after the stage (``fetch:``, ``pose:``, ``runner:``, ...). Precedence:
dataclass defaults < YAML < options given on the command line.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    """The YAML file as a dict (empty for None)."""
    if path is None:
        return {}
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file holds a mapping of sections")
    return data


def build(cls: type[T], *layers: dict[str, Any] | None) -> T:
    """Instantiate dataclass ``cls`` from layered dicts; later layers win, None values are unset.

    Nested dataclass fields take nested dicts; unknown keys are an error naming the valid ones.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for layer in layers:
        for k, v in (layer or {}).items():
            k = k.replace("-", "_")
            if k not in fields:
                raise ValueError(f"{cls.__name__}: unknown option {k!r}; valid: {sorted(fields)}")
            if v is None:
                continue
            if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
                merged[k] = {**merged.get(k, {}), **v}
            else:
                merged[k] = v
    for k, v in list(merged.items()):
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            merged[k] = build(hints[k], v)
    return cls(**merged)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
