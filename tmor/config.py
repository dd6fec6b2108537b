"""Typed configs from YAML files and command-line options, checked before any work.

Every CLI option is a field of a dataclass config; a YAML file (``--config run.yaml``) sets any of
them under a section named after the stage or command (``fetch:``, ``finetune:``, ...).
Precedence: dataclass defaults < YAML < options given on the command line.

Every value is checked where it comes in: a config file whole when it is read
(:func:`read_config`), the command line's values in :func:`build`. A value must have its field's
type (from the annotation; floats finite) and keep its field's rule, from the table that
:func:`rules` puts beside each config dataclass. Anything else is a :class:`ConfigError`: one line
naming the option (``--batch-size``) or the file and key (``run.yaml: finetune.batch_size``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: a rule: ">= 1", "> 0" (a comparison), "[0, 1)" (an interval), "sgd | adamw" (choices), or a
#: function of the value that returns what is wrong with it ("must be ...") or None
Rule = str | Callable[[Any], str | None]

_COMPARE = re.compile(r"^(>=|>|<=|<)\s*(\S+)$")
_INTERVAL = re.compile(r"^([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])$")
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class ConfigError(ValueError):
    """A wrong option or config key: one line naming it and what it must be."""


def rules(**table: Rule) -> Callable[[type[T]], type[T]]:
    """Class decorator (above ``@dataclass``): the rule of each listed field. A rule applies to
    a value that is set (None leaves a field unset) and to each element of a list field."""

    def attach(cls: type[T]) -> type[T]:
        unknown = set(table) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise TypeError(f"{cls.__name__}: rules for unknown fields {sorted(unknown)}")
        cls.__config_rules__ = {k: _compile(v) for k, v in table.items()}  # type: ignore[attr-defined]
        return cls

    return attach


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def _compile(rule: Rule) -> Callable[[Any], str | None]:
    if callable(rule):
        return rule
    text = " ".join(rule.split())
    if m := _COMPARE.match(text):
        op, bound = _OPS[m[1]], _number(m[2])
        return lambda v: None if op(v, bound) else f"must be {text}"
    if m := _INTERVAL.match(text):
        lo, hi = _number(m[2]), _number(m[3])
        lo_ok = operator.le if m[1] == "[" else operator.lt
        hi_ok = operator.le if m[4] == "]" else operator.lt
        return lambda v: None if lo_ok(lo, v) and hi_ok(v, hi) else f"must be in {text}"
    choices = [c.strip() for c in text.split("|")]
    allowed = [_number(c) if re.fullmatch(r"-?\d+", c) else c for c in choices]
    return lambda v: None if v in allowed else f"must be one of {', '.join(choices)}"


def known_layout(value: str) -> str | None:
    """Rule: a joint layout tmor knows (``tmor.skeleton.layouts``)."""
    from tmor.skeleton.layouts import JOINTS, LAYOUTS

    if value in JOINTS:
        return None
    return f"must be a known joint layout: {', '.join(LAYOUTS)} (or an alias of one)"


def torch_device(value: str) -> str | None:
    """Rule: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        return None
    return "must be auto, cpu, cuda, cuda:N or mps"


# ---- types ---------------------------------------------------------------------------------------


def _describe(hint: Any, plural: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args if a is not type(None))
    if origin in (list, tuple) or hint in (list, tuple):
        return f"a list of {_describe(args[0], True)}" if args else "a list"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "mappings" if plural else "a mapping"
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"),
             str: ("a string", "strings"), bool: ("true or false", "true or false")}
    return names[hint][plural] if hint in names else str(hint)


def _typed(value: Any, hint: Any, name: str, flags: Mapping[str, str], where: str | None,
           path: str) -> Any:
    """``value`` as the annotation ``hint`` wants it (ints as floats, PyYAML's unparsed "1e-3"
    as a float), or a ConfigError naming ``name``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _typed(value, options[0], name, flags, where, path)
        for option in options:
            try:
                return _typed(value, option, name, flags, where, path)
            except ConfigError:
                continue
    elif hint is Any:
        return value
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return check_values(hint, value, where, flags, f"{path}.")
    elif origin in (list, tuple) or hint in (list, tuple):
        if isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            return [_typed(v, item, f"{name}[{i}]", flags, where, path)
                    for i, v in enumerate(value)]
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = value
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            if math.isfinite(number):
                return float(number)
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{name} must be {_describe(hint)}, got {value!r}")


def _label(key: str, where: str | None, flags: Mapping[str, str], path: str) -> str:
    """How a user names this field: the command-line option, or ``file: section.key``."""
    if where is None:
        return flags.get(path + key, "--" + key.replace("_", "-"))
    return f"{where}{path}{key}"


def _unknown(key: str, known: list[str], what: str) -> str:
    near = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(known)}"
    return f"unknown {what} {key!r} ({hint})"


def check_values(cls: type, values: Mapping[str, Any], where: str | None = None,
                 flags: Mapping[str, str] | None = None, path: str = "") -> dict[str, Any]:
    """``values`` for dataclass ``cls`` with every key known, every value of its field's type
    and within its field's rule; returns them converted (``batch-size`` -> ``batch_size``, ints
    -> floats where a float is wanted). ``where`` names the file and section (``"run.yaml:
    finetune."``); None means the command line, whose options are ``--key`` or ``flags[key]``."""
    flags = flags or {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    table = getattr(cls, "__config_rules__", {})
    out: dict[str, Any] = {}
    for raw, value in values.items():
        key = str(raw).replace("-", "_")
        if key not in names:
            what = "key" if where is not None else "option"
            prefix = f"{where}{path}".rstrip(". :") + ": " if where is not None else \
                f"{cls.__name__}: "
            raise ConfigError(prefix + _unknown(key, names, what))
        if value is None:
            out[key] = None
            continue
        name = _label(key, where, flags, path)
        value = _typed(value, hints[key], name, flags, where, path + key)
        rule = table.get(key)
        for item in (value if isinstance(value, list) else [value]) if rule else []:
            wrong = rule(item)
            if wrong:
                raise ConfigError(f"{name} {wrong}, got {item!r}")
        out[key] = value
    return out


# ---- building and reading ------------------------------------------------------------------------


def build(cls: type[T], *layers: Mapping[str, Any] | None,
          flags: Mapping[str, str] | None = None) -> T:
    """Instantiate dataclass ``cls`` from layered dicts; later layers win, None values are unset.

    Every layer is checked (:func:`check_values`, named as command-line options, ``flags``
    mapping a field to its option where they differ); nested dataclass fields take nested dicts.
    A config with a ``check()`` method runs it last (rules between fields)."""
    hints = typing.get_type_hints(cls)
    merged: dict[str, Any] = {}
    for layer in layers:
        for k, v in check_values(cls, layer or {}, None, flags).items():
            if v is None:
                continue
            if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
                merged[k] = {**merged.get(k, {}), **v}
            else:
                merged[k] = v
    for k, v in list(merged.items()):
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            merged[k] = build(hints[k], v)
    cfg = cls(**merged)
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    """The YAML file as a dict (empty for None); a file that is not a mapping, is empty or is
    not YAML is a ConfigError naming it."""
    if path is None:
        return {}
    import yaml

    from tmor import fsio

    try:
        data = yaml.safe_load(fsio.read_bytes(str(path)))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"{path}: not valid YAML{at}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the config file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of keys, got "
                          f"{_describe(type(data))}: {str(data)[:60]}")
    return data


def read_config(path: str | Path | None,
                sections: Mapping[str, type | str]) -> dict[str, dict[str, Any]]:
    """A YAML file of sections (``finetune:``, ``fetch:``, ...), checked whole: unknown sections
    and keys, wrong types and values out of range are a ConfigError naming the file, section and
    key. ``sections`` maps each known section to its config class, or to ``"module:Class"`` so
    that a config module is imported only when its section is there. Empty for None."""
    data = load_yaml(path)
    out: dict[str, dict[str, Any]] = {}
    for raw, values in data.items():
        section = str(raw)
        if section not in sections:
            raise ConfigError(f"{path}: " + _unknown(section, list(sections), "section"))
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of keys, got "
                              f"{values!r}")
        cls = sections[section]
        if isinstance(cls, str):
            module, _, name = cls.partition(":")
            cls = getattr(importlib.import_module(module), name)
        out[section] = check_values(cls, values, f"{path}: {section}.")
    return out


def read_flat_config(path: str | Path, cls: type) -> dict[str, Any]:
    """A YAML file of ``cls``'s fields (no sections), checked whole like :func:`read_config`."""
    return check_values(cls, load_yaml(path), f"{path}: ")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
