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


@data_app.command("show")
def show_cmd(
    key: str = typer.Argument(..., help="the sample key"),
    root: str = ROOT,
    output: str = typer.Option(..., "--output", "-o", help="out.mp4, or sheet.png / .jpg"),
    tiles: int = typer.Option(8, help="frames in a contact sheet"),
    cols: int = typer.Option(4, help="columns of a contact sheet"),
    tile_width: int = typer.Option(320, help="width of a contact sheet tile in pixels"),
) -> None:
    """Draw a clip's extracted skeletons and track ids over its frames (mp4 or contact sheet)."""
    from tmor.pipeline.pose.draw import find_clip, render
    from tmor.pipeline.pose.stage import load_pose

    try:
        mp4, npz = find_clip(root, key)
    except FileNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    pose = load_pose(npz)
    path = render(mp4, pose, output, tiles=tiles, cols=cols, tile_width=tile_width)
    typer.echo(f"{path}: {pose['keypoint'].shape[0]} people, {len(pose['frame_index'])} frames")


# ---- section: caption and embed -----------------------------------------------------------------


@data_app.command("encoder-info")
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


@data_app.command("name-clips")
def name_clips_cmd(
    videos: list[str] = typer.Argument(..., help="local video files"),
    model: str = typer.Option("open_clip:ViT-B-32:openai", help="video-language model"),
    vocabulary: str = typer.Option(None, help="action names, one a line [packaged list]"),
    top_k: int = typer.Option(5, help="names printed per clip"),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:N]"),
) -> None:
    """Zero-shot action names of video files against the vocabulary (one JSON line each)."""
    import json

    from tmor.pipeline.caption import CaptionConfig, name_videos

    cfg = CaptionConfig(model=model, vocabulary=vocabulary, top_k=top_k, device=device)
    for row in name_videos(videos, cfg):
        typer.echo(json.dumps(row))


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
    labels: list[str] = typer.Option(
        None, "--labels", help="untrimmed: per-sequence label files (PKU-MMD style "
        "label,start,end a line), paired with the skeleton files by name"),
    classes: str = typer.Option(None, help="untrimmed: class names, one a line, in id order"),
    label_offset: int = typer.Option(0, help="untrimmed: added to label ids (1-based ids: -1)"),
) -> None:
    """Import existing skeletons as skeleton-only triplet shards into <root>/triplets.

    With --labels, sequences are untrimmed with per-frame labels (for `tmor-train detect`)."""
    import json

    from tmor.shards.importers import import_files

    if labels:
        from pathlib import Path

        from tmor.shards.import_untrimmed import import_pku_style

        if classes is None:
            raise typer.BadParameter("--labels needs --classes names.txt")
        names = [n.strip() for n in Path(classes).read_text().splitlines() if n.strip()]
        try:
            summary = import_pku_style(paths, labels, root, names, fps=fps,
                                       layout=layout if fmt else "ntu25",
                                       label_offset=label_offset)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        typer.echo(json.dumps({k: v for k, v in summary.items() if k != "split"}, default=str))
        return

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


@train_app.command("pretrain")
def pretrain_cmd(
    shards: str = typer.Option(None, help="triplet shards: brace pattern, list or folder"),
    config: str = typer.Option(None, "--config", "-c", help="YAML of PretrainConfig fields"),
    out_dir: str = typer.Option(None, "--out-dir", "-o", help="run folder [runs/pretrain]"),
    stage: int = typer.Option(None, help="1: L_MM + L_MV; 2: L_MT [1]"),
    init: str = typer.Option(None, help="checkpoint to start from (stage 2: stage 1's)"),
    losses: str = typer.Option(None, help="subset: none | M | M+V | M+V+T (or mm,mv,mt)"),
    epochs: int = typer.Option(None, help="epochs [10]"),
    max_steps: int = typer.Option(None, help="stop after this many steps"),
    batch_size: int = typer.Option(None, help="samples per rank per step [64]"),
    epoch_samples: int = typer.Option(None, help="samples per epoch [corpus size]"),
    frames: int = typer.Option(None, help="frames per sample T [64]"),
    channels: int = typer.Option(None, help="2: x, y; 3: 3D [2]"),
    layout: str = typer.Option(None, help="joint layout to convert to [coco17]"),
    max_persons: int = typer.Option(None, help="persons M [2]"),
    optimizer: str = typer.Option(None, help="sgd | adamw [sgd]"),
    lr: float = typer.Option(None, help="base learning rate [0.05]"),
    amp: str = typer.Option(None, help="bf16 | fp16 | none, CUDA only [bf16]"),
    eps: float = typer.Option(None, help="DBSCAN eps, cosine distance [0.1]"),
    min_samples: int = typer.Option(None, help="DBSCAN min_samples [10]"),
    queue_size: int = typer.Option(None, help="memory queue entries per pair [16384]"),
    ckpt_every: int = typer.Option(None, help="checkpoint every N steps, 0: per epoch [1000]"),
    num_workers: int = typer.Option(None, help="reader workers per rank [2]"),
    device: str = typer.Option(None, help="auto | cpu | cuda [auto]"),
    seed: int = typer.Option(None, help="seed [0]"),
    deterministic: bool = typer.Option(None, help="deterministic algorithms [no]"),
    set_: list[str] = typer.Option(None, "--set", help="any other field: key=value (YAML)"),
) -> None:
    """Cluster-guided contrastive pre-training of UNIK (run under torchrun for DDP)."""
    import logging

    import yaml

    from tmor.train.config import PretrainConfig, parse_losses
    from tmor.train.pretrain import run_pretrain

    given = {k: v for k, v in dict(
        shards=shards, out_dir=out_dir, stage=stage, init=init, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, epoch_samples=epoch_samples, frames=frames,
        channels=channels, layout=layout, max_persons=max_persons, optimizer=optimizer, lr=lr,
        amp=amp, eps=eps, min_samples=min_samples, queue_size=queue_size, ckpt_every=ckpt_every,
        num_workers=num_workers, device=device, seed=seed, deterministic=deterministic,
    ).items() if v is not None}
    if losses is not None:
        given["losses"] = parse_losses(losses)
    for item in set_ or []:
        key, _, value = item.partition("=")
        given[key.replace("-", "_")] = yaml.safe_load(value)
    cfg = (PretrainConfig.from_yaml(config, **given) if config
           else PretrainConfig.from_dict(given))
    if not cfg.shards:
        raise typer.BadParameter("--shards (or shards: in --config) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    typer.echo(run_pretrain(cfg))


@train_app.command("embed")
def train_embed_cmd(
    ckpt: str = typer.Option(..., help="checkpoint with the encoder"),
    shards: str = typer.Option(..., help="triplet shards: brace pattern, list or folder"),
    out: str = typer.Option(..., "--out", "-o", help="output parquet: key, index, embedding"),
    batch_size: int = typer.Option(256, help="samples per forward"),
    num_workers: int = typer.Option(2, help="reader workers"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Motion embeddings of every sample of a corpus with a pre-trained encoder."""
    from tmor.train.pretrain import embed_to_parquet

    n = embed_to_parquet(ckpt, shards, out, batch_size, num_workers, device)
    typer.echo(f"{n} embeddings -> {out}")


# ---- section: transfer (linear-probe, finetune, detect, zero-shot) ------------------------------

T_CONFIG = typer.Option(None, "--config", help="YAML file; its section for this command")
T_DATA = typer.Option(..., "--data", help="a pyskl / mmaction2 pickle (.pkl) or a corpus root")
T_INIT = typer.Option(None, "--init", help="checkpoint to start from [from scratch]")
T_DEVICE = typer.Option(None, help="auto | cpu | cuda [auto]")


def _transfer_config(cls: type, section: str, config: str | None, values: dict) -> object:
    """defaults < YAML section < options given on the command line."""
    from tmor.config import build, load_yaml

    return build(cls, load_yaml(config).get(section), values)


def _print_summary(results: dict, keys: tuple[str, ...]) -> None:
    import json

    best, last = results["best"], results["last"]
    typer.echo(json.dumps({
        "task": results["task"], "mode": results.get("mode"), "epoch_best": best["epoch"],
        **{f"best_{k}": best[k] for k in keys}, **{f"last_{k}": last[k] for k in keys},
        "out": results["config"]["out"]}, default=float))


def _classify_cmd(mode: str, section: str, config: str | None, values: dict) -> None:
    from tmor.train.classify import ClassifyConfig, run_classification

    cfg = _transfer_config(ClassifyConfig, section, config, {**values, "mode": mode})
    results = run_classification(cfg, log=typer.echo)
    _print_summary(results, ("top1", "top5", "mean_class_accuracy"))


@train_app.command("linear-probe")
def linear_probe_cmd(
    data: str = T_DATA,
    out: str = typer.Option(None, help="output folder [runs/transfer]"),
    split_train: str = typer.Option(None, help="train split name [train]"),
    split_test: str = typer.Option(None, help="test split name [test]"),
    init: str = T_INIT,
    epochs: int = typer.Option(None, help="epochs [30]"),
    batch_size: int = typer.Option(None, help="batch size [32]"),
    lr: float = typer.Option(None, help="learning rate [0.01]"),
    optimizer: str = typer.Option(None, help="sgd | adamw [sgd]"),
    weight_decay: float = typer.Option(None, help="weight decay [5e-4]"),
    frames: int = typer.Option(None, help="frames T per sample [checkpoint's, else 64]"),
    channels: int = typer.Option(None, help="2 (x, y) or 3 [checkpoint's, else 2]"),
    max_persons: int = typer.Option(None, help="persons M [checkpoint's, else 2]"),
    layout: str = typer.Option(None, help="convert joints to this layout [checkpoint's]"),
    data_layout: str = typer.Option(None, help="layout of a pickle that does not say [coco17]"),
    holdout: float = typer.Option(None, help="shards without a split: test fraction [0.2]"),
    seed: int = typer.Option(None, help="random seed [0]"),
    device: str = T_DEVICE,
    config: str = T_CONFIG,
) -> None:
    """Frozen encoder, a linear classifier on its pooled feature: best.pt, last.pt, results.json."""
    values = dict(locals())
    values.pop("config")
    _classify_cmd("linear", "linear_probe", config, values)


@train_app.command("finetune")
def finetune_cmd(
    data: str = T_DATA,
    out: str = typer.Option(None, help="output folder [runs/transfer]"),
    split_train: str = typer.Option(None, help="train split name [train]"),
    split_test: str = typer.Option(None, help="test split name [test]"),
    init: str = T_INIT,
    epochs: int = typer.Option(None, help="epochs [30]"),
    batch_size: int = typer.Option(None, help="batch size [32]"),
    lr: float = typer.Option(None, help="learning rate [sgd 0.1, adamw 1e-3]"),
    optimizer: str = typer.Option(None, help="sgd | adamw [sgd]"),
    weight_decay: float = typer.Option(None, help="weight decay [5e-4]"),
    frames: int = typer.Option(None, help="frames T per sample [checkpoint's, else 64]"),
    channels: int = typer.Option(None, help="2 (x, y) or 3 [checkpoint's, else 2]"),
    max_persons: int = typer.Option(None, help="persons M [checkpoint's, else 2]"),
    layout: str = typer.Option(None, help="convert joints to this layout [checkpoint's]"),
    data_layout: str = typer.Option(None, help="layout of a pickle that does not say [coco17]"),
    augment: bool = typer.Option(None, "--augment/--no-augment", help="crop + rotation [on]"),
    holdout: float = typer.Option(None, help="shards without a split: test fraction [0.2]"),
    seed: int = typer.Option(None, help="random seed [0]"),
    device: str = T_DEVICE,
    config: str = T_CONFIG,
) -> None:
    """Fine-tune the whole network for classification: best.pt, last.pt, results.json."""
    values = dict(locals())
    values.pop("config")
    _classify_cmd("finetune", "finetune", config, values)


@train_app.command("detect")
def detect_cmd(
    data: str = T_DATA,
    mode: str = typer.Option(None, help="finetune | linear [finetune]"),
    out: str = typer.Option(None, help="output folder [runs/detect]"),
    split_train: str = typer.Option(None, help="train split name [train]"),
    split_test: str = typer.Option(None, help="test split name [test]"),
    init: str = T_INIT,
    epochs: int = typer.Option(None, help="epochs [30]"),
    batch_size: int = typer.Option(None, help="windows per batch [16]"),
    lr: float = typer.Option(None, help="learning rate [adamw 1e-3, linear 0.01]"),
    optimizer: str = typer.Option(None, help="adamw | sgd [adamw]"),
    window: int = typer.Option(None, help="window length in frames [64]"),
    stride: int = typer.Option(None, help="window stride [window / 2]"),
    threshold: float = typer.Option(None, help="frame score threshold for segments [0.5]"),
    channels: int = typer.Option(None, help="2 (x, y) or 3 [checkpoint's, else 2]"),
    max_persons: int = typer.Option(None, help="persons M [checkpoint's, else 2]"),
    layout: str = typer.Option(None, help="convert joints to this layout [checkpoint's]"),
    data_layout: str = typer.Option(None, help="layout of a pickle that does not say [ntu25]"),
    seed: int = typer.Option(None, help="random seed [0]"),
    device: str = T_DEVICE,
    config: str = T_CONFIG,
) -> None:
    """Frame-wise multi-label detection on untrimmed sequences; frame and event mAP."""
    values = dict(locals())
    values.pop("config")
    from tmor.train.detect import DetectConfig, run_detection

    cfg = _transfer_config(DetectConfig, "detect", config, values)
    results = run_detection(cfg, log=typer.echo)
    _print_summary(results, ("frame_map_tsu", "frame_map_charades", "event_map"))


@train_app.command("zero-shot")
def zero_shot_cmd(
    ckpt: str = typer.Option(..., "--ckpt", help="pre-training checkpoint (encoder + heads)"),
    classes: str = typer.Option(..., "--classes", help="class names, one a line, in id order"),
    data: str = T_DATA,
    split: str = typer.Option(None, help="split to evaluate [test]"),
    out: str = typer.Option(None, help="write results.json and scores.npy here"),
    text_encoder: str = typer.Option(None, help="embed-stage spec [the checkpoint's]"),
    template: list[str] = typer.Option(None, "--template", help="prompt, e.g. 'a person {}.'"),
    with_video: bool = typer.Option(None, "--with-video", help="average in the video embedding"),
    frames: int = typer.Option(None, help="frames T per sample [checkpoint's, else 64]"),
    max_persons: int = typer.Option(None, help="persons M [checkpoint's]"),
    layout: str = typer.Option(None, help="convert joints to this layout [checkpoint's]"),
    data_layout: str = typer.Option(None, help="layout of a pickle that does not say [coco17]"),
    device: str = T_DEVICE,
    config: str = T_CONFIG,
) -> None:
    """Zero-shot classification by cosine between motion and class-prompt text embeddings."""
    values = {k: v for k, v in locals().items() if k not in ("config", "template")}
    import json

    from tmor.train.zeroshot import ZeroShotConfig, run_zero_shot

    values["templates"] = list(template) if template else None
    cfg = _transfer_config(ZeroShotConfig, "zero_shot", config, values)
    r = run_zero_shot(cfg, log=typer.echo)
    typer.echo(json.dumps({k: r[k] for k in (
        "top1", "top5", "mean_class_accuracy", "chance", "num_samples", "with_video")}))


def main_data() -> None:
    data_app()


def main_train() -> None:
    train_app()
