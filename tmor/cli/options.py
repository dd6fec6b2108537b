"""Shared command-line plumbing of the CLIs: the runner options every stage command takes."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from tmor.cli.defaults import config_defaults, with_default
from tmor.config import build, read_config

RUNNER_PANEL = "Runner (how the stage runs)"
SLURM_PANEL = "Slurm (--executor slurm)"
_RUN = config_defaults("tmor.pipeline.runner", "RunnerOptions")
_SLURM = config_defaults("tmor.pipeline.runner", "SlurmOptions")


def _runner(help_text: str, default_of: str | None = None, *names: str, panel: str = RUNNER_PANEL,
            slurm: bool = False, hidden: bool = False, default: Any = None) -> Any:
    if default_of is not None:
        help_text = with_default(help_text, (_SLURM if slurm else _RUN)[default_of])
    return typer.Option(default, *names, help=help_text, rich_help_panel=panel, hidden=hidden,
                        show_default=default is not None)


#: (parameter, annotation, typer option): the runner options every stage command takes
_RUNNER_OPTIONS: list[tuple[str, Any, Any]] = [
    ("config", str | None, _runner("YAML file setting any option, by section (runner:, fetch:, "
                                   "pose:, ...)", None, "--config", "-c")),
    ("executor", str | None, _runner("local | slurm", "executor")),
    ("workers", int | None, _runner("local worker processes", "workers")),
    ("worker_index", int | None, _runner(
        "run as worker I of --worker-count N of an outside scheduler [default: "
        "SLURM_ARRAY_TASK_ID when set]")),
    ("worker_count", int | None, _runner(
        "N: workers of an outside scheduler, or array tasks of --executor slurm [default: "
        "SLURM_ARRAY_TASK_COUNT, else --workers]")),
    ("num_workers", int | None, _runner("old name of --worker-count", None, "--num-workers",
                                        hidden=True)),
    ("retry_failed", bool, _runner("redo transient and rate-limited failures (permanent ones "
                                   "stay)", None, "--retry-failed", default=False)),
    ("overwrite", bool, _runner("redo every shard of this stage", None, "--overwrite",
                                default=False)),
    ("shard_ids", str | None, _runner(
        "only these shards of the plan, e.g. 0,3,5 [default: every shard]")),
    ("shards", str | None, _runner("old name of --shard-ids", None, "--shards", hidden=True)),
    ("max_same_failures", int | None, _runner(
        "stop the worker when the first N samples of a shard fail the same unexpected way",
        "max_same_failures")),
    ("progress", bool, _runner("show a progress bar (counts every worker's results)", None,
                               "--progress/--no-progress", default=True)),
    ("partition", str | None, _runner("partition [default: the cluster's]", panel=SLURM_PANEL)),
    ("time_min", int | None, _runner("time limit per task, minutes", "time_min",
                                     panel=SLURM_PANEL, slurm=True)),
    ("gpus", int | None, _runner("GPUs per task", "gpus_per_task", panel=SLURM_PANEL,
                                 slurm=True)),
    ("cpus", int | None, _runner("CPUs per task", "cpus_per_task", panel=SLURM_PANEL,
                                 slurm=True)),
    ("mem_gb", int | None, _runner("memory per task, GB", "mem_gb", panel=SLURM_PANEL,
                                   slurm=True)),
    ("array_parallelism", int | None, _runner("array tasks running at once",
                                              "array_parallelism", panel=SLURM_PANEL,
                                              slurm=True)),
    ("slurm_folder", str | None, _runner("submitit logs [default: <root>/_slurm/<stage>]",
                                         panel=SLURM_PANEL)),
]


def _ids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"shard ids are integers separated by commas, got {text!r}",
                                 param_hint="--shard-ids") from None


#: runner fields whose option has another name
RUNNER_FLAGS = {"num_workers": "--worker-count", "shards": "--shard-ids",
                "slurm.gpus_per_task": "--gpus", "slurm.cpus_per_task": "--cpus",
                "slurm.folder": "--slurm-folder"}


def read_data_config(path: str | None) -> dict[str, dict[str, Any]]:
    """The ``--config`` file of a ``tmor-data`` command, checked whole (every section)."""
    from tmor.pipeline.stages import yaml_sections

    return read_config(path, yaml_sections())


def runner_options(values: dict[str, Any], yaml_cfg: dict[str, Any]):
    """RunnerOptions from the YAML ``runner:`` section and the command line (old option names
    still accepted)."""
    from tmor.pipeline.runner import RunnerOptions

    slurm = {
        "partition": values["partition"], "time_min": values["time_min"],
        "gpus_per_task": values["gpus"], "cpus_per_task": values["cpus"],
        "mem_gb": values["mem_gb"], "array_parallelism": values["array_parallelism"],
        "folder": values["slurm_folder"],
    }
    count = values["worker_count"] if values["worker_count"] is not None else \
        values["num_workers"]
    cli = {
        "workers": values["workers"], "executor": values["executor"],
        "worker_index": values["worker_index"], "num_workers": count,
        "retry_failed": values["retry_failed"] or None, "overwrite": values["overwrite"] or None,
        "shards": _ids(values["shard_ids"] or values["shards"]),
        "max_same_failures": values["max_same_failures"],
        "progress": values["progress"], "slurm": slurm,
    }
    return build(RunnerOptions, yaml_cfg.get("runner"), cli, flags=RUNNER_FLAGS)


def with_runner_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the runner options to a typer command; it receives ``runner`` (RunnerOptions) and
    ``yaml_cfg`` (the --config file's sections, checked whole before the command runs)."""
    sig = inspect.signature(fn)
    own = [p for p in sig.parameters.values() if p.name not in ("runner", "yaml_cfg")]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, ann, default in _RUNNER_OPTIONS
    ]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name, _, _ in _RUNNER_OPTIONS}
        yaml_cfg = read_data_config(values["config"])
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
