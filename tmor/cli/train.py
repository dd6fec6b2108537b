"""``tmor-train``: pre-train and transfer. Parses options and calls library functions; no logic
here, and nothing heavy is imported at module level, so ``--help`` is instant. Under torchrun:
``torchrun --nproc-per-node 8 -m tmor.cli.train pretrain --config cfg.yaml``."""

from __future__ import annotations

import typer

from tmor.cli.defaults import defaults_from, escape_markup
from tmor.cli.errors import guard_commands, new_app, run_app

app = new_app("Pre-train a UNIK skeleton encoder on triplet shards and transfer it.")


# ---- pre-training ------------------------------------------------------------------------------


@app.command("pretrain")
@defaults_from("tmor.train.config", "PretrainConfig",
               {"out": "out_dir", "loader_workers": "num_workers"})
def pretrain_cmd(
    shards: str = typer.Option(None, help="triplet shards: brace pattern, list or folder"),
    config: str = typer.Option(None, "--config", "-c", help="YAML of PretrainConfig fields"),
    out: str = typer.Option(None, "--out", "-o", help="run folder"),
    out_dir: str = typer.Option(None, "--out-dir", hidden=True, help="old name of --out"),
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
    guidance: bool = typer.Option(
        None, help="cluster guidance; --no-guidance: plain instance discrimination [on]"),
    queue_size: int = typer.Option(None, help="memory queue entries per pair [16384]"),
    ckpt_every: int = typer.Option(None, help="checkpoint every N steps, 0: per epoch [1000]"),
    loader_workers: int = typer.Option(None, help="DataLoader workers per rank"),
    num_workers: int = typer.Option(None, "--num-workers", hidden=True,
                                    help="old name of --loader-workers"),
    device: str = typer.Option(None, help="auto | cpu | cuda [auto]"),
    seed: int = typer.Option(None, help="seed [0]"),
    deterministic: bool = typer.Option(None, help="deterministic algorithms [no]"),
    report_to: str = typer.Option(
        None, "--report-to", help="csv,tensorboard,wandb (csv always) [csv,tensorboard]"),
    wandb_project: str = typer.Option(None, help="wandb project [tmor]"),
    wandb_mode: str = typer.Option(None, help="offline | online | disabled [offline]"),
    set_: list[str] = typer.Option(None, "--set", help="any other field: key=value (YAML)"),
) -> None:
    """Cluster-guided contrastive pre-training of UNIK. DDP: the same command under torchrun,
    `torchrun --nproc-per-node 8 -m tmor.cli.train pretrain --config cfg.yaml`."""
    import logging

    from tmor.config import build, read_flat_config
    from tmor.train.config import PRETRAIN_FLAGS, PretrainConfig, parse_losses

    given = {k: v for k, v in dict(
        shards=shards, out_dir=out or out_dir, stage=stage, init=init, epochs=epochs,
        max_steps=max_steps, batch_size=batch_size, epoch_samples=epoch_samples, frames=frames,
        channels=channels, layout=layout, max_persons=max_persons, optimizer=optimizer, lr=lr,
        amp=amp, eps=eps, min_samples=min_samples, guidance=guidance, queue_size=queue_size,
        ckpt_every=ckpt_every,
        num_workers=num_workers if loader_workers is None else loader_workers, device=device,
        seed=seed, deterministic=deterministic,
        report_to=report_to, wandb_project=wandb_project, wandb_mode=wandb_mode,
    ).items() if v is not None}
    if losses is not None:
        given["losses"] = parse_losses(losses)
    from_file = read_flat_config(config, PretrainConfig) if config else {}
    cfg = build(PretrainConfig, from_file, given, _set_values(set_, PretrainConfig),
                flags=PRETRAIN_FLAGS)
    if not cfg.shards:
        raise typer.BadParameter("--shards (or shards: in --config) is required")
    from tmor.train.pretrain import run_pretrain  # torch: after the options are checked

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    typer.echo(run_pretrain(cfg))


def _set_values(items: list[str] | None, cls: type) -> dict:
    """``--set key=value`` (a YAML value) as checked fields of ``cls``."""
    import yaml

    from tmor.cli.options import parse_pairs
    from tmor.config import ConfigError, check_values

    values = {}
    for key, text in parse_pairs(items, "--set").items():
        try:
            values[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: not a YAML value: {text!r}") from None
    return check_values(cls, values, "--set ")


@app.command("embed")
def train_embed_cmd(
    ckpt: str = typer.Option(..., help="checkpoint with the encoder"),
    shards: str = typer.Option(..., help="triplet shards: brace pattern, list or folder"),
    out: str = typer.Option(..., "--out", "-o", help="output parquet: key, index, embedding"),
    batch_size: int = typer.Option(256, min=1, help="samples per forward"),
    loader_workers: int = typer.Option(2, min=0, help="DataLoader workers"),
    num_workers: int = typer.Option(None, "--num-workers", min=0, hidden=True,
                                    help="old name of --loader-workers"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Motion embeddings of every sample of a corpus with a pre-trained encoder."""
    from tmor.train.embed import embed_to_parquet

    workers = loader_workers if num_workers is None else num_workers
    n = embed_to_parquet(ckpt, shards, out, batch_size, workers, device)
    typer.echo(f"{n} embeddings -> {out}")


# ---- transfer ----------------------------------------------------------------------------------

T_CONFIG = typer.Option(None, "--config", help="YAML file; its section for this command")
T_DATA = typer.Option(..., "--data", help="a pyskl / mmaction2 pickle (.pkl) or a corpus root")
T_INIT = typer.Option(None, "--init", help="checkpoint to start from [from scratch]")
T_DEVICE = typer.Option(None, help="auto | cpu | cuda [auto]")
T_SPLIT_VAL = typer.Option(
    None, help="validation split that picks the best epoch; absent: carved from train [val]")
T_VAL_FRACTION = typer.Option(
    None, help="fraction of train carved for validation when the data has none [0.1]")


def _transfer_config(cls: type, section: str, config: str | None, values: dict,
                     flags: dict | None = None) -> object:
    """defaults < YAML section < options given on the command line; the file is checked whole
    (every section) and the options too, before any data or model loads."""
    from tmor.config import build, read_config
    from tmor.train.config import TRANSFER_SECTIONS

    return build(cls, read_config(config, TRANSFER_SECTIONS).get(section), values, flags=flags)


def _print_summary(results: dict, keys: tuple[str, ...]) -> None:
    import json

    best, last = results["best"], results["last"]
    typer.echo(json.dumps({
        "task": results["task"], "mode": results.get("mode"), "epoch_best": best["epoch"],
        **{f"best_{k}": best[k] for k in keys}, **{f"last_{k}": last[k] for k in keys},
        "out": results["config"]["out"]}, default=float))


def _classify_command(mode: str, section: str, doc: str):
    """One command body for linear-probe and finetune (same options, another mode)."""

    def command(
        data: str = T_DATA,
        out: str = typer.Option(None, "--out", "-o", help="output folder"),
        split_train: str = typer.Option(None, help="train split name [train]"),
        split_test: str = typer.Option(None, help="test split name [test]"),
        split_val: str = T_SPLIT_VAL,
        val_fraction: float = T_VAL_FRACTION,
        init: str = T_INIT,
        epochs: int = typer.Option(
            None, help="epochs [30, or more to reach --min-steps optimizer steps]"),
        min_steps: int = typer.Option(
            None, help="without --epochs: at least this many optimizer steps [1500]"),
        metric: str = typer.Option(
            None, help="picks the best epoch: top1 | mean_class_accuracy (Smarthome) [top1]"),
        batch_size: int = typer.Option(None, help="batch size [32]"),
        lr: float = typer.Option(
            None, help="learning rate [linear 0.01; finetune sgd 0.1, adamw 1e-3]"),
        optimizer: str = typer.Option(None, help="sgd | adamw [sgd]"),
        weight_decay: float = typer.Option(None, help="weight decay [5e-4]"),
        frames: int = typer.Option(None, help="frames T per sample [checkpoint's, else 64]"),
        channels: int = typer.Option(
            None, help="2 (x, y) or 3 [checkpoint's, else 3 for 3D data, else 2]"),
        max_persons: int = typer.Option(None, help="persons M [checkpoint's, else 2]"),
        layout: str = typer.Option(
            None, help="convert joints to this layout [checkpoint's, else the data's own]"),
        data_layout: str = typer.Option(
            None, help="layout of a pickle that does not say [coco17]"),
        augment: bool = typer.Option(None, "--augment/--no-augment", help="crop + rotation [on]"),
        holdout: float = typer.Option(None, help="shards without a split: test fraction [0.2]"),
        seed: int = typer.Option(None, help="random seed [0]"),
        device: str = T_DEVICE,
        config: str = T_CONFIG,
    ) -> None:
        values = {k: v for k, v in locals().items() if k not in ("config", "mode", "section")}
        from tmor.train.classify import ClassifyConfig, run_classification

        cfg = _transfer_config(ClassifyConfig, section, config, {**values, "mode": mode})
        results = run_classification(cfg, log=typer.echo)
        _print_summary(results, ("top1", "top5", "mean_class_accuracy"))

    command.__doc__ = doc
    return defaults_from("tmor.train.classify", "ClassifyConfig")(command)


app.command("linear-probe")(_classify_command(
    "linear", "linear_probe",
    "Frozen encoder, a linear classifier on its pooled feature: best.pt, last.pt, results.json."))
app.command("finetune")(_classify_command(
    "finetune", "finetune",
    "Fine-tune the whole network for classification: best.pt, last.pt, results.json."))


@app.command("detect")
@defaults_from("tmor.train.detect", "DetectConfig")
def detect_cmd(
    data: str = T_DATA,
    mode: str = typer.Option(None, help="finetune | linear [finetune]"),
    out: str = typer.Option(None, "--out", "-o", help="output folder"),
    split_train: str = typer.Option(None, help="train split name [train]"),
    split_test: str = typer.Option(None, help="test split name [test]"),
    split_val: str = T_SPLIT_VAL,
    val_fraction: float = T_VAL_FRACTION,
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


@app.command("zero-shot")
@defaults_from("tmor.train.zeroshot", "ZeroShotConfig")
def zero_shot_cmd(
    ckpt: str = typer.Option(..., "--ckpt", help="pre-training checkpoint (encoder + heads)"),
    classes: str = typer.Option(..., "--classes", help="class names, one a line, in id order"),
    data: str = T_DATA,
    split: str = typer.Option(None, help="split to evaluate [test]"),
    out: str = typer.Option(None, "--out", "-o", help="write results.json and scores.npy here"),
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
    cfg = _transfer_config(ZeroShotConfig, "zero_shot", config, values,
                           {"templates": "--template"})
    r = run_zero_shot(cfg, log=typer.echo)
    typer.echo(json.dumps({k: r[k] for k in (
        "top1", "top5", "mean_class_accuracy", "chance", "num_samples", "with_video")}))


escape_markup(app)  # "[default: ...]" in help texts is shown, not taken as Rich markup
guard_commands(app, "tmor-train")  # known errors: one line on stderr, exit 2


def main() -> None:
    """Entry point of ``tmor-train``: known errors print one line and exit 2."""
    run_app(app, "tmor-train")


if __name__ == "__main__":
    main()
