"""Command lines ``tmor-data`` and ``tmor-train``: parse options, call library functions.

No logic lives here, and nothing heavy is imported at module level, so ``--help`` is instant.
Each area owns one marked section below; add commands only inside your own section.
"""

from __future__ import annotations

import typer

from tmor.cliutil import with_runner_options

data_app = typer.Typer(
    help="Build a skeleton / video / text corpus: fetch, extract-pose, caption, embed, pack.",
    no_args_is_help=True,
    add_completion=False,
)
train_app = typer.Typer(
    help="Pre-train a UNIK skeleton encoder on triplet shards and transfer it.",
    no_args_is_help=True,
    add_completion=False,
)

# ---- section: runner and fetch (lead) -----------------------------------------------------------

ROOT = typer.Option(..., "--root", "-r", help="corpus root: a local folder or an fsspec URL")


def run_configured_stage(
    stage_cls: type, config_cls: type, section: str, root: str, cli_values: dict,
    runner: object, yaml_cfg: dict,
) -> dict:
    """Build the stage's config (defaults < YAML section < command line) and run it."""
    from tmor.config import build
    from tmor.pipeline.executors import run_stage

    config = build(config_cls, yaml_cfg.get(section), cli_values)
    return run_stage(stage_cls(config), root, runner)


def plan_inputs(input: str, root: str, shard_size: int, columns: list[str] | None) -> None:
    """Read the input list and add its new keys to the corpus plan."""
    from rich import print as rprint

    from tmor.cliutil import parse_pairs
    from tmor.manifests.inputs import read_inputs
    from tmor.manifests.plan import write_plan

    rows, report = read_inputs(input, parse_pairs(columns, "--column"))
    if report["duplicates"]:
        rprint(f"[yellow]{report['duplicates']} duplicate rows kept once[/] "
               f"(e.g. {report['duplicate_examples']})")
    plan = write_plan(root, rows, shard_size)
    rprint(f"plan: {plan.rows} rows, {plan.new_keys} new keys in {len(plan.new_shards)} new "
           f"shard(s), {plan.already_planned} already planned, {plan.total_shards} shards in all")


INPUT_HELP = "input list (csv/tsv/jsonl/parquet/txt, .gz ok) or a folder of videos"
SHARD_SIZE = typer.Option(1000, help="samples per shard for newly planned keys")
COLUMNS = typer.Option(None, "--column", help="map a column: url=video_link, start=t0, ...")


@data_app.command("plan")
def plan_cmd(
    input: str = typer.Argument(..., help=INPUT_HELP),
    root: str = ROOT,
    shard_size: int = SHARD_SIZE,
    column: list[str] = COLUMNS,
) -> None:
    """Split an input list into shards of stable keys (plan/NNNNNN.parquet)."""
    plan_inputs(input, root, shard_size, column)


@data_app.command("fetch")
@with_runner_options
def fetch_cmd(
    input: str = typer.Argument(None, help=INPUT_HELP + "; omit to use the existing plan"),
    root: str = ROOT,
    shard_size: int = SHARD_SIZE,
    column: list[str] = COLUMNS,
    allow_local: list[str] = typer.Option(
        None, help="folder under which local paths / file:// may be read (repeatable)"),
    max_height: int = typer.Option(None, help="format height cap [360]"),
    fps: float = typer.Option(None, help="output fps [the source's, up to 30]"),
    short_side: int = typer.Option(None, help="scale the short side to this many pixels"),
    keep_audio: bool = typer.Option(None, help="keep the audio track [no]"),
    timeout_s: float = typer.Option(None, help="per-download / per-ffmpeg timeout [300]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Download each clip's time range, cut it exactly, and normalize it (fetch/NNNNNN.tar)."""
    from tmor.pipeline.fetch import FetchConfig, FetchStage

    if input is not None and (runner.worker_index is None or runner.worker_index == 0):
        plan_inputs(input, root, shard_size, column)
    cli = {"allow_local": allow_local or None, "max_height": max_height, "fps": fps,
           "short_side": short_side, "keep_audio": keep_audio, "timeout_s": timeout_s}
    run_configured_stage(FetchStage, FetchConfig, "fetch", root, cli, runner, yaml_cfg)


@data_app.command("status")
def status_cmd(root: str = ROOT) -> None:
    """Per-stage counts, failures by class and seconds per sample."""
    from tmor.pipeline.report import print_status

    print_status(root)

# ---- section: pose (extract-pose, show) ---------------------------------------------------------

# ---- section: caption and embed -----------------------------------------------------------------

# ---- section: pack, run, validate, stats, import, export ----------------------------------------

# ---- section: pretrain and embed (tmor-train) ---------------------------------------------------

# ---- section: transfer (linear-probe, finetune, detect, zero-shot) ------------------------------


def main_data() -> None:
    data_app()


def main_train() -> None:
    train_app()
