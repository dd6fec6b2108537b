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


@data_app.command("extract-pose")
@with_runner_options
def extract_pose_cmd(
    root: str = ROOT,
    backend: str = typer.Option(None, help="ultralytics | mediapipe | rtmlib | mmpose"),
    model: str = typer.Option(None, help="model file or name (e.g. yolo11n-pose.pt)"),
    device: str = typer.Option(None, help="auto | cpu | cuda[:N] [auto]"),
    fps: float = typer.Option(None, help="frames per second to sample [the clip's, up to 30]"),
    batch_size: int = typer.Option(None, help="frames per model call, across clips [32]"),
    max_persons: int = typer.Option(None, help="tracks kept per clip [2]"),
    lift: str = typer.Option(None, help="none | 3d: also keypoint_3d in metres [none]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Tracked 2D (and 3D) skeletons of every fetched clip (pose/NNNNNN.tar)."""
    from tmor.pipeline.pose.stage import PoseConfig, PoseStage

    cli = {"backend": backend, "model": model, "device": device, "fps": fps,
           "batch_size": batch_size, "max_persons": max_persons, "lift": lift}
    run_configured_stage(PoseStage, PoseConfig, "pose", root, cli, runner, yaml_cfg)


@data_app.command("caption")
@with_runner_options
def caption_cmd(
    root: str = ROOT,
    model: str = typer.Option(None, help="video-language model for zero-shot naming"),
    vocabulary: str = typer.Option(None, help="action names, one a line [packaged list]"),
    top_k: int = typer.Option(None, help="names kept per unlabeled clip [5]"),
    device: str = typer.Option(None, help="auto | cpu | cuda[:N]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """One text per clip: input captions, labels through templates, or zero-shot names."""
    from tmor.pipeline.caption import CaptionConfig, CaptionStage

    cli = {"model": model, "vocabulary": vocabulary, "top_k": top_k, "device": device}
    run_configured_stage(CaptionStage, CaptionConfig, "caption", root, cli, runner, yaml_cfg)


@data_app.command("embed")
@with_runner_options
def embed_cmd(
    root: str = ROOT,
    model: str = typer.Option(None, help="open_clip:ARCH:PRETRAINED | viclip:PATH"),
    device: str = typer.Option(None, help="auto | cpu | cuda[:N]"),
    batch_size: int = typer.Option(None, help="clips per forward [32]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Frozen video-language embeddings of each clip and its caption (embed/NNNNNN.tar)."""
    from tmor.pipeline.embed import EmbedConfig, EmbedStage

    cli = {"model": model, "device": device, "batch_size": batch_size}
    run_configured_stage(EmbedStage, EmbedConfig, "embed", root, cli, runner, yaml_cfg)


@data_app.command("pack")
@with_runner_options
def pack_cmd(
    root: str = ROOT,
    min_frames_with_person: int = typer.Option(None, help="drop clips with fewer [8]"),
    min_mean_score: float = typer.Option(None, help="drop clips under this keypoint score"),
    min_video_text_sim: float = typer.Option(None, help="drop clips under this similarity"),
    min_seconds: float = typer.Option(None, help="drop clips shorter than this [0.5]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Join pose, caption and embeddings by key into triplet shards (triplets/NNNNNN.tar)."""
    from tmor.pipeline.pack import PackConfig, PackStage, finish_pack

    cli = {"min_frames_with_person": min_frames_with_person, "min_mean_score": min_mean_score,
           "min_video_text_sim": min_video_text_sim, "min_seconds": min_seconds}
    run_configured_stage(PackStage, PackConfig, "pack", root, cli, runner, yaml_cfg)
    finish_pack(root)


@data_app.command("run")
@with_runner_options
def run_cmd(
    input: str = typer.Argument(None, help=INPUT_HELP + "; omit to use the existing plan"),
    root: str = ROOT,
    shard_size: int = SHARD_SIZE,
    column: list[str] = COLUMNS,
    allow_local: list[str] = typer.Option(None, help="folder local paths may be read from"),
    pose_model: str = typer.Option(None, help="pose model file or name"),
    embed_model: str = typer.Option(None, help="video-language model (also for captions)"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Every stage in order: fetch, extract-pose, caption, embed, pack; each resumes."""
    from tmor.pipeline.run_all import run_all

    if input is not None and (runner.worker_index is None or runner.worker_index == 0):
        plan_inputs(input, root, shard_size, column)
    sections = {k: dict(yaml_cfg.get(k) or {}) for k in ("fetch", "pose", "caption", "embed",
                                                         "pack")}
    if allow_local:
        sections["fetch"]["allow_local"] = allow_local
    if pose_model:
        sections["pose"]["model"] = pose_model
    if embed_model:
        sections["embed"]["model"] = embed_model
    if sections["embed"].get("model"):
        sections["caption"].setdefault("model", sections["embed"]["model"])
    try:
        run_all(root, sections, runner)
    except RuntimeError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None


@data_app.command("status")
def status_cmd(root: str = ROOT) -> None:
    """Per-stage counts, failures by class and seconds per sample."""
    from tmor.pipeline.report import print_status

    print_status(root)

# ---- section: pose (extract-pose, show) ---------------------------------------------------------

# ---- section: caption and embed -----------------------------------------------------------------

# ---- section: pack, run, validate, stats, import, export ----------------------------------------


@data_app.command("validate")
def validate_cmd(
    root: str = ROOT,
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Check every triplet shard: readable, members complete, shapes/dtypes, no NaN, unique keys."""
    import json

    from tmor.shards.validate import report_dict, validate

    report = validate(root)
    if as_json:
        typer.echo(json.dumps(report_dict(report), indent=2))
    else:
        for d in report.defects:
            typer.echo(f"DEFECT {d}", err=True)
        typer.echo(report.summary())
    raise typer.Exit(0 if report.ok else 1)


@data_app.command("stats")
def stats_cmd(
    root: str = ROOT,
    plots: bool = typer.Option(True, help="write PNG plots into <root>/stats/"),
) -> None:
    """The corpus card as a table, plus plots of lengths, people, scores and labels."""
    from rich.console import Console

    from tmor.shards.stats import render_table, stats

    _, rows, written = stats(root, plots=plots)
    console = Console()
    console.print(render_table(rows, f"corpus {root}"))
    for url in written:
        console.print(f"wrote {url}")


@data_app.command("import")
def import_cmd(
    paths: list[str] = typer.Argument(..., help="skeleton files: .pkl, .skeleton, .npy, .csv"),
    root: str = ROOT,
    fmt: str = typer.Option(None, "--format", help="pyskl | ntu | kinect_csv | fsd10 [by name]"),
    layout: str = typer.Option("coco17", help="joint layout of a pyskl pickle's keypoints"),
    fps: float = typer.Option(30.0, help="frame rate of a pyskl pickle's sequences"),
    samples_per_shard: int = typer.Option(1000, help="samples per triplet shard"),
) -> None:
    """Import existing skeletons as skeleton-only triplet shards into <root>/triplets."""
    import json

    from tmor.shards.importers import import_files

    kwargs = {"layout": layout, "fps": fps} if (fmt == "pyskl" or (
        len(paths) == 1 and paths[0].endswith((".pkl", ".pickle")))) else {}
    summary = import_files(paths, root, fmt, samples_per_shard, **kwargs)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "split"}, default=str))


@data_app.command("export")
def export_cmd(
    root: str = ROOT,
    to: str = typer.Option("pyskl", help="pyskl | stgcn"),
    out: str = typer.Option(..., help="output file: .pkl (pyskl) or .npy (stgcn data)"),
    label_out: str = typer.Option(None, help="stgcn: label pickle [<out>_label.pkl]"),
    channels: int = typer.Option(3, help="stgcn: 2 (x, y) or 3 (3D, else x, y, score)"),
    max_frames: int = typer.Option(None, help="stgcn: cut clips to this many frames"),
    layout: str = typer.Option(None, help="stgcn: convert every sample to this joint layout"),
) -> None:
    """Export triplet shards as a pyskl / mmaction2 pickle or ST-GCN (N,C,T,V,M) npy + labels."""
    import json

    from tmor.shards.exporters import export_pyskl, export_stgcn

    if to == "pyskl":
        summary = export_pyskl(root, out)
    elif to == "stgcn":
        label_out = label_out or (out[:-4] if out.endswith(".npy") else out) + "_label.pkl"
        summary = export_stgcn(
            root, out, label_out, channels=channels, max_frames=max_frames, layout=layout
        )
    else:
        raise typer.BadParameter(f"unknown export format {to!r}", param_hint="--to")
    typer.echo(json.dumps(summary))


# ---- section: pretrain and embed (tmor-train) ---------------------------------------------------

# ---- section: transfer (linear-probe, finetune, detect, zero-shot) ------------------------------


def main_data() -> None:
    data_app()


def main_train() -> None:
    train_app()
