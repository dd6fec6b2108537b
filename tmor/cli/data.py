"""``tmor-data``: build a corpus. Parses options and calls library functions; no logic here, and
nothing heavy is imported at module level, so ``--help`` is instant."""

from __future__ import annotations

import typer

from tmor.cli.defaults import defaults_from, escape_markup
from tmor.cli.errors import guard_commands, new_app, run_app
from tmor.cli.options import parse_pairs, with_runner_options

app = new_app("Build a skeleton / video / text corpus: fetch, extract-pose, caption, embed, pack.")


# ---- stages ------------------------------------------------------------------------------------

ROOT = typer.Option(..., "--root", "-r", help="corpus root: a local folder or an fsspec URL")


def stage_options(command: str, cli_values: dict, yaml_cfg: dict) -> dict:
    """The options of the stage of ``command``: defaults < YAML section < command line, checked
    before anything is planned, claimed or written."""
    from tmor.pipeline.stages import get_stage

    spec = get_stage(command)
    options = {**spec.options(yaml_cfg), **{k: v for k, v in cli_values.items() if v is not None}}
    spec.config_from(options)
    return options


def run_stage_command(command: str, root: str, cli_values: dict, runner: object,
                      yaml_cfg: dict) -> dict:
    """Run the registered stage of ``command`` with its checked options."""
    from tmor.pipeline.stages import get_stage, run_registered

    options = stage_options(command, cli_values, yaml_cfg)
    return run_registered(get_stage(command), root, options, runner)


def plan_inputs(input: str, root: str, shard_size: int, columns: list[str] | None) -> None:
    """Add the input list's new keys to the corpus plan: idempotent, under the plan lock, and
    nothing is read when this list was planned before (any number of workers may run it)."""
    from rich import print as rprint

    from tmor.manifests.inputs import input_fingerprint, read_inputs
    from tmor.manifests.plan import write_plan

    column_map = parse_pairs(columns, "--column")
    found: dict = {}

    def rows():
        table, found["report"] = read_inputs(input, column_map)
        return table

    plan = write_plan(root, rows, shard_size, fingerprint=input_fingerprint(input, column_map),
                      source=input)
    report = found.get("report") or {}
    if report.get("duplicates"):
        rprint(f"[yellow]{report['duplicates']} duplicate rows kept once[/] "
               f"(e.g. {report['duplicate_examples']})")
    if plan.skipped:
        rprint(f"plan: {input} is already planned ({plan.rows} rows), {plan.total_shards} "
               "shards in all")
        return
    rprint(f"plan: {plan.rows} rows, {plan.new_keys} new keys in {len(plan.new_shards)} new "
           f"shard(s), {plan.already_planned} already planned, {plan.total_shards} shards in all")


INPUT_HELP = "input list (csv/tsv/jsonl/parquet/txt, .gz ok) or a folder of videos"
SHARD_SIZE = typer.Option(1000, min=1, help="samples per shard for newly planned keys")
COLUMNS = typer.Option(None, "--column", help="map a column: url=video_link, start=t0, ...")


@app.command("plan")
def plan_cmd(
    input: str = typer.Argument(..., help=INPUT_HELP),
    root: str = ROOT,
    shard_size: int = SHARD_SIZE,
    column: list[str] = COLUMNS,
) -> None:
    """Split an input list into shards of stable keys (plan/NNNNNN.parquet)."""
    plan_inputs(input, root, shard_size, column)


@app.command("fetch")
@with_runner_options
@defaults_from("tmor.pipeline.fetch", "FetchConfig")
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
    clips_in_flight: int = typer.Option(None, help="clips fetched at once per worker [8]"),
    max_source_mb: float = typer.Option(
        None, help="largest whole-file download (servers without Range) [2048]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Download each clip's time range, cut it exactly, and normalize it (fetch/NNNNNN.tar)."""
    cli = {"allow_local": allow_local or None, "max_height": max_height, "fps": fps,
           "short_side": short_side, "keep_audio": keep_audio, "timeout_s": timeout_s,
           "clips_in_flight": clips_in_flight, "max_source_mb": max_source_mb}
    stage_options("fetch", cli, yaml_cfg)  # a wrong option stops here, before the plan
    if input is not None:  # every worker may: idempotent, under the plan lock
        plan_inputs(input, root, shard_size, column)
    run_stage_command("fetch", root, cli, runner, yaml_cfg)


@app.command("extract-pose")
@with_runner_options
@defaults_from("tmor.pipeline.pose.stage", "PoseConfig")
def extract_pose_cmd(
    root: str = ROOT,
    backend: str = typer.Option(None, help="ultralytics | mediapipe | rtmlib | mmpose"),
    model: str = typer.Option(None, help="model file or name (e.g. yolo11n-pose.pt)"),
    device: str = typer.Option(None, help="auto | cpu | cuda[:N] [auto]"),
    fps: float = typer.Option(None, help="frames per second to sample [the clip's, up to 30]"),
    batch_size: int = typer.Option(None, help="frames per model call, across clips [128 on "
                                   "CUDA, else 32]"),
    decode_workers: int = typer.Option(None, help="threads decoding clips in parallel [4]"),
    max_persons: int = typer.Option(None, help="tracks kept per clip [2]"),
    lift: str = typer.Option(None, help="none | 3d: keypoint_3d in metres (mediapipe) | "
                             "motionbert:PATH: every track lifted by a MotionBERT checkpoint "
                             "(h36m17) [none]"),
    lift_units: str = typer.Option(None, help="motionbert: normalized | pixels [normalized]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Tracked 2D (and 3D) skeletons of every fetched clip (pose/NNNNNN.tar)."""
    cli = {"backend": backend, "model": model, "device": device, "fps": fps,
           "batch_size": batch_size, "decode_workers": decode_workers,
           "max_persons": max_persons, "lift": lift, "lift_units": lift_units}
    run_stage_command("extract-pose", root, cli, runner, yaml_cfg)


@app.command("caption")
@with_runner_options
@defaults_from("tmor.pipeline.caption", "CaptionConfig")
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
    cli = {"model": model, "vocabulary": vocabulary, "top_k": top_k, "device": device}
    run_stage_command("caption", root, cli, runner, yaml_cfg)


@app.command("embed")
@with_runner_options
@defaults_from("tmor.pipeline.embed", "EmbedConfig")
def embed_cmd(
    root: str = ROOT,
    model: str = typer.Option(None, help="open_clip:ARCH:PRETRAINED | viclip:PATH"),
    device: str = typer.Option(None, help="auto | cpu | cuda[:N]"),
    batch_size: int = typer.Option(None, help="clips per forward [32]"),
    runner=None,
    yaml_cfg=None,
) -> None:
    """Frozen video-language embeddings of each clip and its caption (embed/NNNNNN.tar)."""
    cli = {"model": model, "device": device, "batch_size": batch_size}
    run_stage_command("embed", root, cli, runner, yaml_cfg)


@app.command("pack")
@with_runner_options
@defaults_from("tmor.pipeline.pack", "PackConfig")
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
    cli = {"min_frames_with_person": min_frames_with_person, "min_mean_score": min_mean_score,
           "min_video_text_sim": min_video_text_sim, "min_seconds": min_seconds}
    run_stage_command("pack", root, cli, runner, yaml_cfg)


@app.command("run")
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
    from tmor.pipeline.stages import STAGES

    sections = {spec.name: spec.options(yaml_cfg) for spec in STAGES}
    if allow_local:
        sections["fetch"]["allow_local"] = allow_local
    if pose_model:
        sections["pose"]["model"] = pose_model
    if embed_model:
        sections["embed"]["model"] = embed_model
    if sections["embed"].get("model"):
        sections["caption"].setdefault("model", sections["embed"]["model"])
    for spec in STAGES:  # every stage's options checked before anything is planned or run
        spec.config_from(sections[spec.name])
    if input is not None:  # every worker may: idempotent, under the plan lock
        plan_inputs(input, root, shard_size, column)
    run_all(root, sections, runner)


@app.command("status")
def status_cmd(
    root: str = ROOT,
    as_json: bool = typer.Option(False, "--json", help="print the status as one JSON object"),
) -> None:
    """Per-stage counts, failures by class, seconds per sample, shards in progress and
    per-worker totals (read from the ledgers and work folders)."""
    if as_json:
        import json

        from tmor.pipeline.report import corpus_status

        typer.echo(json.dumps(corpus_status(root), default=str))
        return
    from tmor.pipeline.report import print_status

    print_status(root)

# ---- looking at a corpus -------------------------------------------------------------------------


@app.command("show")
def show_cmd(
    key: str = typer.Argument(..., help="the sample key"),
    root: str = ROOT,
    out: str = typer.Option(None, "--out", "-o", help="out.mp4, or sheet.png / .jpg"),
    output: str = typer.Option(None, "--output", hidden=True, help="old name of --out"),
    tiles: int = typer.Option(8, help="frames in a contact sheet"),
    cols: int = typer.Option(4, help="columns of a contact sheet"),
    tile_width: int = typer.Option(320, help="width of a contact sheet tile in pixels"),
) -> None:
    """Draw a clip's extracted skeletons and track ids over its frames (mp4 or contact sheet)."""
    from tmor.pipeline.pose.draw import load_clip, render

    out = out or output
    if not out:
        raise typer.BadParameter("give the output file", param_hint="--out")
    mp4, pose = load_clip(root, key)
    path = render(mp4, pose, out, tiles=tiles, cols=cols, tile_width=tile_width)
    typer.echo(f"{path}: {pose['keypoint'].shape[0]} people, {len(pose['frame_index'])} frames")


# ---- video-language models ---------------------------------------------------------------------


@app.command("encoder-info")
def encoder_info_cmd(
    model: str = typer.Argument(..., help="open_clip:ARCH:PRETRAINED | viclip:PATH"),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:N]"),
) -> None:
    """Load a video-language encoder and print its id, checkpoint sha256 and sizes."""
    import json

    from tmor.pipeline.vl import load_encoder

    enc = load_encoder(model, device)
    typer.echo(json.dumps({"model_id": enc.model_id, "sha256": enc.sha256, "dim": enc.dim,
                           "num_frames": enc.num_frames, "image_size": enc.image_size}))


@app.command("name-clips")
def name_clips_cmd(
    videos: list[str] = typer.Argument(..., help="local video files"),
    model: str = typer.Option("open_clip:ViT-B-32:openai", help="video-language model"),
    vocabulary: str = typer.Option(None, help="action names, one a line [packaged list]"),
    top_k: int = typer.Option(5, help="names printed per clip"),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:N]"),
) -> None:
    """Zero-shot action names of video files against the vocabulary (one JSON line each)."""
    import json

    from tmor.config import build
    from tmor.pipeline.caption import CaptionConfig, name_videos

    cfg = build(CaptionConfig, {"model": model, "vocabulary": vocabulary, "top_k": top_k,
                                "device": device})
    for row in name_videos(videos, cfg):
        typer.echo(json.dumps(row))


# ---- checking, importing and exporting shards ---------------------------------------------------


@app.command("validate")
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


@app.command("stats")
def stats_cmd(
    root: str = ROOT,
    plots: bool = typer.Option(True, help="write PNG plots into <root>/stats/"),
    as_json: bool = typer.Option(False, "--json", help="print the measured summary and the "
                                 "card as one JSON object (no table)"),
) -> None:
    """The corpus card as a table, plus plots of lengths, people, scores and labels."""
    from rich.console import Console

    from tmor.shards.stats import render_table, stats

    summary, rows, written = stats(root, plots=plots)
    if as_json:
        import json

        from tmor.shards.card import read_corpus_card

        typer.echo(json.dumps({"summary": summary, "card": read_corpus_card(root),
                               "plots": written}, default=str))
        return
    console = Console()
    console.print(render_table(rows, f"corpus {root}"))
    for url in written:
        console.print(f"wrote {url}")


BENCHMARK_HELP = ("benchmarks: penn_action | smarthome | tsu | uav_human | pku_mmd | charades | "
                  "kinect_v1; files: pyskl | ntu | kinect_csv | fsd10 [by name]")


@app.command("import")
def import_cmd(
    paths: list[str] = typer.Argument(
        ..., help="skeleton files or folders: .pkl, .skeleton, .npy, .csv, or a benchmark's "
        "native files (.mat, LCR-Net .json, .txt, pose .npz / a corpus root for charades)"),
    root: str = ROOT,
    fmt: str = typer.Option(None, "--format", help=BENCHMARK_HELP),
    layout: str = typer.Option("coco17", help="joint layout of a pyskl pickle's keypoints"),
    fps: float = typer.Option(None, help="frame rate [the format's; pickles 30]"),
    samples_per_shard: int = typer.Option(1000, help="samples per triplet shard"),
    labels: list[str] = typer.Option(
        None, "--labels", help="untrimmed: per-sequence label files (PKU-MMD style "
        "label,start,end a line), paired with the skeleton files by name"),
    classes: str = typer.Option(None, help="class names, one a line, in id order"),
    label_offset: int = typer.Option(0, help="untrimmed: added to label ids (1-based ids: -1)"),
    annotations: list[str] = typer.Option(
        None, "--annotations", help="benchmarks: annotation files (tsu: smarthome_CS_51.json "
        "smarthome_CV_51.json; pku_mmd: label files or their folder; charades: charades.json "
        "or the CSVs; kinect_v1: actionLabel.txt)"),
    splits: list[str] = typer.Option(
        None, "--splits", help="benchmarks: official split files or their folder (smarthome: "
        "{train,validation,test}_{CS,CV1,CV2}.txt; pku_mmd: cross-subject.txt cross-view.txt)"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace the corpus the root holds (without it such a root "
        "is refused)"),
) -> None:
    """Import existing skeletons as skeleton-only triplet shards into <root>/triplets.

    With --labels, sequences are untrimmed with per-frame labels (for `tmor-train detect`).
    A benchmark --format keeps every frame and stores each sample's ids and official split
    membership (use the split names with --split-train / --split-test). The joint layout is
    checked against the arrays first: a mismatch is refused before anything is written.
    An import is a transaction: the corpus is written beside the root and swapped in only when
    every input was read and checked; on any error the root is left as it was."""
    import json

    from tmor.shards.benchmarks import FORMATS, import_benchmark
    from tmor.shards.importers import import_files

    def done(summary: dict) -> None:
        typer.echo(json.dumps({k: v for k, v in summary.items() if k != "split"}, default=str))

    if fmt in FORMATS:
        done(import_benchmark(
            fmt, paths, root, annotations=list(annotations or labels or []) or None,
            splits=list(splits or []) or None, classes=classes, fps=fps,
            samples_per_shard=samples_per_shard, overwrite=overwrite))
        return
    if labels:
        from tmor.shards.benchmarks.common import read_lines
        from tmor.shards.import_untrimmed import import_pku_style

        if classes is None:
            raise typer.BadParameter("--labels needs --classes names.txt")
        done(import_pku_style(paths, labels, root, read_lines(classes), fps=fps or 30.0,
                              layout=layout if fmt else "ntu25", label_offset=label_offset,
                              overwrite=overwrite))
        return
    kwargs = {"layout": layout, "fps": fps or 30.0} if (fmt == "pyskl" or (
        len(paths) == 1 and paths[0].endswith((".pkl", ".pickle")))) else {}
    done(import_files(paths, root, fmt, samples_per_shard, overwrite=overwrite, **kwargs))


@app.command("export")
def export_cmd(
    root: str = ROOT,
    to: str = typer.Option("pyskl", "--to", "--format", help="pyskl | stgcn"),
    out: str = typer.Option(..., "--out", "-o", help="output file: .pkl (pyskl) or .npy "
                            "(stgcn data)"),
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


escape_markup(app)  # "[default: ...]" in help texts is shown, not taken as Rich markup
guard_commands(app, "tmor-data")  # known errors: one line on stderr, exit 2


def main() -> None:
    """Entry point of ``tmor-data``: known errors print one line and exit 2."""
    run_app(app, "tmor-data")


if __name__ == "__main__":
    main()
