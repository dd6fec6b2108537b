"""Shared command-line plumbing of the CLIs: the runner options every stage command takes."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from tmor.config import build, load_yaml

_RUNNER_OPTIONS: list[tuple[str, Any, Any]] = [
    ("config", str | None, typer.Option(None, help="YAML file setting any option, by section")),
    ("workers", int | None, typer.Option(None, help="local worker processes [1]")),
    ("executor", str | None, typer.Option(None, help="local | slurm [local]")),
    ("worker_index", int | None, typer.Option(
        None, help="run as worker I of N of an outside scheduler (default SLURM_ARRAY_TASK_ID)")),
    ("num_workers", int | None, typer.Option(None, help="N for --worker-index; array size")),
    ("retry_failed", bool, typer.Option(False, help="redo transient and rate-limited failures")),
    ("overwrite", bool, typer.Option(False, help="redo every shard of this stage")),
    ("shards", str | None, typer.Option(None, help="only these shards, e.g. 0,3,5")),
    ("partition", str | None, typer.Option(None, help="slurm partition")),
    ("time_min", int | None, typer.Option(None, help="slurm time per task, min [240]")),
    ("gpus", int | None, typer.Option(None, help="slurm GPUs per task [0]")),
    ("cpus", int | None, typer.Option(None, help="slurm CPUs per task [8]")),
    ("mem_gb", int | None, typer.Option(None, help="slurm memory per task, GB [32]")),
    ("array_parallelism", int | None, typer.Option(None, help="slurm tasks at once [64]")),
    ("slurm_folder", str | None, typer.Option(None, help="submitit log folder")),
    ("progress", bool, typer.Option(True, help="show a progress bar")),
]


def runner_options(values: dict[str, Any], yaml_cfg: dict[str, Any]):
    """RunnerOptions from the YAML ``runner:`` section and the command line."""
    from tmor.pipeline.runner import RunnerOptions

    slurm = {
        "partition": values["partition"], "time_min": values["time_min"],
        "gpus_per_task": values["gpus"], "cpus_per_task": values["cpus"],
        "mem_gb": values["mem_gb"], "array_parallelism": values["array_parallelism"],
        "folder": values["slurm_folder"],
    }
    shards = values["shards"]
    cli = {
        "workers": values["workers"], "executor": values["executor"],
        "worker_index": values["worker_index"], "num_workers": values["num_workers"],
        "retry_failed": values["retry_failed"] or None, "overwrite": values["overwrite"] or None,
        "shards": [int(s) for s in shards.split(",")] if shards else None,
        "progress": values["progress"], "slurm": slurm,
    }
    return build(RunnerOptions, yaml_cfg.get("runner"), cli)


def with_runner_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the runner options to a typer command; it receives ``runner`` (RunnerOptions) and
    ``yaml_cfg`` (the parsed --config file)."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name not in ("runner", "yaml_cfg")]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, ann, default in _RUNNER_OPTIONS
    ]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name, _, _ in _RUNNER_OPTIONS}
        yaml_cfg = load_yaml(values["config"])
        return fn(**kwargs, runner=runner_options(values, yaml_cfg), yaml_cfg=yaml_cfg)

    hints = {p.name: p.annotation for p in own}
    wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**hints, **{n: a for n, a, _ in _RUNNER_OPTIONS}}
    return wrapper


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` -> ``{"a": "b", "c": "d"}``."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise typer.BadParameter(f"{what} takes NAME=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out
