"""The command lines as a user meets them: every option's default in `--help`, known errors as
one stderr line with exit code 2, the old option spellings still accepted."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tmor.cli.data import app as data_app
from tmor.cli.defaults import show
from tmor.cli.train import app as train_app

TESTS = Path(__file__).parent
REPO = TESTS.parent


def _configs() -> dict[tuple[str, str], tuple[type, dict[str, str]]]:
    """(app, command) -> (the config dataclass its None options fall back to, param -> field)."""
    from tmor.pipeline.caption import CaptionConfig
    from tmor.pipeline.embed import EmbedConfig
    from tmor.pipeline.fetch import FetchConfig
    from tmor.pipeline.pack import PackConfig
    from tmor.pipeline.pose.stage import PoseConfig
    from tmor.train.classify import ClassifyConfig
    from tmor.train.config import PretrainConfig
    from tmor.train.detect import DetectConfig
    from tmor.train.zeroshot import ZeroShotConfig

    return {
        ("data", "fetch"): (FetchConfig, {}), ("data", "extract-pose"): (PoseConfig, {}),
        ("data", "caption"): (CaptionConfig, {}), ("data", "embed"): (EmbedConfig, {}),
        ("data", "pack"): (PackConfig, {}),
        ("train", "pretrain"): (PretrainConfig, {"out": "out_dir",
                                                 "loader_workers": "num_workers"}),
        ("train", "linear-probe"): (ClassifyConfig, {}),
        ("train", "finetune"): (ClassifyConfig, {}),
        ("train", "detect"): (DetectConfig, {}), ("train", "zero-shot"): (ZeroShotConfig, {}),
    }


def _runner_defaults() -> dict[str, object]:
    from tmor.pipeline.runner import RunnerOptions, SlurmOptions

    r, s = RunnerOptions(), SlurmOptions()
    return {"executor": r.executor, "workers": r.workers, "max_same_failures":
            r.max_same_failures, "time_min": s.time_min, "gpus": s.gpus_per_task,
            "cpus": s.cpus_per_task, "mem_gb": s.mem_gb,
            "array_parallelism": s.array_parallelism}


def _rows(help_text: str) -> dict[str, str]:
    """Long option name -> its row of the rendered help (one line at this width)."""
    rows = {}
    for line in help_text.splitlines():
        m = re.match(r"^\s*│\s*(?:\*\s+)?(--[a-z0-9-]+)", line)
        if m:
            rows[m.group(1)] = " ".join(line.split())
    return rows


def _commands():
    for label, app in (("data", data_app), ("train", train_app)):
        group = typer.main.get_command(app)
        for name, command in group.commands.items():
            yield label, app, name, command


@pytest.mark.parametrize("label,app,name,command", list(_commands()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_help_shows_every_option_default(label, app, name, command):
    configs = _configs()
    runner_defaults = _runner_defaults() if any(
        p.name == "executor" for p in command.params) else {}
    config = configs.get((label, name))
    fields = {f.name: f for f in dataclasses.fields(config[0])} if config else {}
    done = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "400",
                                                          "TERMINAL_WIDTH": "400"})
    assert done.exit_code == 0, done.output
    rows = _rows(done.output)
    checked = 0
    for param in command.params:
        if param.param_type_name != "option" or param.hidden or param.name == "help":
            continue
        long = next(o for o in param.opts if o.startswith("--"))
        row = rows.get(long)
        assert row is not None, f"{name}: {long} is not in the help:\n{done.output}"
        if param.required:
            assert "[required]" in row
            continue
        if param.default is not None:  # typer's own default, or "[default: no]" for flags
            assert "[default: " in row, f"{name} {long}: {row}"
            checked += 1
            continue
        if param.name in runner_defaults:
            expected = runner_defaults[param.name]
        elif config and config[1].get(param.name, param.name) in fields:
            field = fields[config[1].get(param.name, param.name)]
            expected = field.default if not isinstance(
                field.default, type(dataclasses.MISSING)) else None
        else:
            continue
        if expected is None:
            continue
        assert f"[default: {show(expected)}]" in row, f"{name} {long}: {row}"
        checked += 1
    assert checked or name in ("plan", "show", "status", "validate", "stats", "import",
                               "export", "encoder-info", "name-clips", "run", "embed")


def test_runner_and_slurm_options_have_their_own_panels():
    done = CliRunner().invoke(data_app, ["fetch", "--help"], env={"COLUMNS": "200"})
    assert "Runner (how the stage runs)" in done.output
    assert "Slurm (--executor slurm)" in done.output
    assert "--shard-ids" in done.output and "--worker-count" in done.output
    assert "--num-workers" not in done.output  # the old name works, hidden


def test_old_option_names_still_parse():
    from tmor.cli.options import runner_options

    values = {name: None for name in ("config", "workers", "executor", "worker_index",
                                      "worker_count", "shard_ids", "partition", "time_min",
                                      "gpus", "cpus", "mem_gb", "array_parallelism",
                                      "slurm_folder", "max_same_failures")}
    values.update(num_workers=3, shards="1,2", retry_failed=False, overwrite=False,
                  progress=True)
    opts = runner_options(values, {})
    assert opts.num_workers == 3 and opts.shards == [1, 2]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_stage_on_a_root_without_plan_prints_one_line_and_exits_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _cli(["tmor.cli.data", "extract-pose", "--root", str(empty)], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no plan yet" in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    debug = _cli(["tmor.cli.data", "extract-pose", "--root", str(empty), "--debug"], tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_pretrain_on_missing_shards_prints_one_line_and_exits_2(tmp_path):
    done = _cli(["tmor.cli.train", "pretrain", "--shards", "missing/", "--device", "cpu"],
                tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing" in lines[0], done.stderr


CRASH_CLI = textwrap.dedent("""
    import sys
    import typer
    sys.path.insert(0, {tests!r})
    from _crashing import RaisesOnEverySample
    from tmor.cli.errors import run_app
    from tmor.pipeline.executors import run_stage
    from tmor.pipeline.runner import RunnerOptions

    app = typer.Typer()

    @app.command()
    def crash(root: str, workers: int = 1) -> None:
        run_stage(RaisesOnEverySample(), root, RunnerOptions(progress=False, workers=workers))

    @app.command()
    def unused() -> None:
        pass

    if __name__ == "__main__":
        run_app(app, "crash")
""")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stage_that_raises_on_every_sample_exits_nonzero_and_commits_nothing(
        tmp_path, videos_dir, workers):
    from tmor.manifests import ledger as L
    from tmor.manifests.inputs import read_inputs
    from tmor.manifests.plan import write_plan

    df, _ = read_inputs(str(videos_dir))
    root = tmp_path / "corpus"
    write_plan(str(root), df, shard_size=4)
    script = tmp_path / "crash_cli.py"
    script.write_text(CRASH_CLI.format(tests=str(TESTS)))
    done = subprocess.run([sys.executable, str(script), "crash", str(root), "--workers",
                           str(workers)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "model is broken" in lines[0], done.stderr
    assert "left uncommitted" in lines[0]
    assert L.committed_shards(str(root), "digest") == []


def test_deliberate_exit_codes_pass_through_the_error_guard(tmp_path):
    """`validate` ends with typer.Exit(1) on a bad corpus: that is its answer, not an error."""
    from tmor.cli.errors import _is_click

    assert _is_click(typer.Exit(1)) and _is_click(typer.BadParameter("x"))
    assert not _is_click(RuntimeError("x"))
