"""Hostile flags and config files (issue 21): every command of both CLIs refuses an
out-of-range, non-finite, wrong-typed or unknown option, YAML section or key before any work:
exit code 2, one stderr line naming it, no traceback, no run folder, and an existing corpus
root byte-identical.

The commands run in-process through the real entry point (``run_app``, what ``tmor-data`` and
``tmor-train`` call), so the suite is quick; two cases also run as subprocesses. The paths given
to ``--data``, ``--ckpt`` and ``--shards`` do not exist: a command that read them before checking
its options would name them instead of the option, and fail its case.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import subprocess
import sys
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
import yaml
from conftest import tree_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmor.cli.data import app as data_app
from tmor.cli.errors import DEBUG_ENV, run_app
from tmor.cli.train import app as train_app
from tmor.config import ConfigError, build, read_config

REPO = Path(__file__).resolve().parents[1]
APPS = {"data": (data_app, "tmor-data"), "train": (train_app, "tmor-train")}

FT = "finetune --data DATA --out OUT"
LP = "linear-probe --data DATA --out OUT"
DET = "detect --data DATA --out OUT"
ZS = "zero-shot --ckpt CKPT --classes CLASSES --data DATA --out OUT"
PT = "pretrain --shards SHARDS --out OUT"
EMB = "embed --ckpt CKPT --shards SHARDS --out OUT"


def flag(cli: str, args: str, name: str, id: str):
    """A hostile command line; ``name`` must appear in the one error line."""
    return pytest.param(cli, args, None, name, id=f"flags_yaml:{id}")


def conf(cli: str, args: str, text: str, name: str, id: str):
    """A hostile ``--config`` file (``text``) given to ``args``; its line names the file and
    ``name`` (``FILE``: the file alone)."""
    return pytest.param(cli, args, text, name, id=f"flags_yaml:{id}")


CASES = [
    # ---- tmor-train finetune / linear-probe (the examples first) ----------------------
    flag("train", f"{FT} --epochs -1", "--epochs", "finetune-epochs-neg1"),
    flag("train", f"{FT} --batch-size 0", "--batch-size", "finetune-batch-size-0"),
    flag("train", f"{FT} --lr nan", "--lr", "finetune-lr-nan"),
    flag("train", f"{FT} --val-fraction 1.5", "--val-fraction", "finetune-val-fraction-1.5"),
    flag("train", f"{FT} --channels 5", "--channels", "finetune-channels-5"),
    flag("train", f"{FT} --layout bogus", "--layout", "finetune-layout-bogus"),
    flag("train", f"{FT} --epochs 0", "--epochs", "finetune-epochs-0"),
    flag("train", f"{FT} --lr -0.1", "--lr", "finetune-lr-negative"),
    flag("train", f"{FT} --lr inf", "--lr", "finetune-lr-inf"),
    flag("train", f"{FT} --val-fraction 0", "--val-fraction", "finetune-val-fraction-0"),
    flag("train", f"{FT} --data-layout bogus", "--data-layout", "finetune-data-layout-bogus"),
    flag("train", f"{FT} --frames 0", "--frames", "finetune-frames-0"),
    flag("train", f"{FT} --max-persons 0", "--max-persons", "finetune-max-persons-0"),
    flag("train", f"{FT} --min-steps 0", "--min-steps", "finetune-min-steps-0"),
    flag("train", f"{FT} --weight-decay -1", "--weight-decay", "finetune-weight-decay-neg"),
    flag("train", f"{FT} --optimizer lbfgs", "--optimizer", "finetune-optimizer-unknown"),
    flag("train", f"{FT} --metric top3", "--metric", "finetune-metric-unknown"),
    flag("train", f"{FT} --holdout 1", "--holdout", "finetune-holdout-1"),
    flag("train", f"{FT} --seed -1", "--seed", "finetune-seed-neg"),
    flag("train", f"{FT} --device gpu", "--device", "finetune-device-unknown"),
    flag("train", f"{FT} --epochs abc", "--epochs", "finetune-epochs-not-int"),
    flag("train", f"{FT} --batch-size 1.5", "--batch-size", "finetune-batch-size-float"),
    flag("train", f"{FT} --epoch 3", "--epoch", "finetune-unknown-option"),
    flag("train", "finetune --out OUT --epochs 3", "--data", "finetune-missing-data"),
    flag("train", f"{LP} --epochs -1", "--epochs", "linear-probe-epochs-neg1"),
    flag("train", f"{LP} --lr nan", "--lr", "linear-probe-lr-nan"),
    flag("train", f"{LP} --batch-size 0", "--batch-size", "linear-probe-batch-size-0"),
    # ---- tmor-train detect / zero-shot / embed --------------------------------------------------
    flag("train", f"{DET} --window 0", "--window", "detect-window-0"),
    flag("train", f"{DET} --stride 0", "--stride", "detect-stride-0"),
    flag("train", f"{DET} --threshold 1.5", "--threshold", "detect-threshold-1.5"),
    flag("train", f"{DET} --batch-size 0", "--batch-size", "detect-batch-size-0"),
    flag("train", f"{DET} --epochs -1", "--epochs", "detect-epochs-neg1"),
    flag("train", f"{DET} --lr nan", "--lr", "detect-lr-nan"),
    flag("train", f"{DET} --val-fraction 1.5", "--val-fraction", "detect-val-fraction-1.5"),
    flag("train", f"{DET} --channels 4", "--channels", "detect-channels-4"),
    flag("train", f"{DET} --layout bogus", "--layout", "detect-layout-bogus"),
    flag("train", f"{DET} --mode half", "--mode", "detect-mode-unknown"),
    flag("train", f"{ZS} --frames 0", "--frames", "zero-shot-frames-0"),
    flag("train", f"{ZS} --max-persons 0", "--max-persons", "zero-shot-max-persons-0"),
    flag("train", f"{ZS} --layout bogus", "--layout", "zero-shot-layout-bogus"),
    flag("train", f"{ZS} --data-layout bogus", "--data-layout", "zero-shot-data-layout-bogus"),
    flag("train", f"{ZS} --device tpu", "--device", "zero-shot-device-unknown"),
    flag("train", f"{EMB} --batch-size 0", "--batch-size", "embed-batch-size-0"),
    flag("train", f"{EMB} --loader-workers -1", "--loader-workers", "embed-loader-workers-neg"),
    # ---- tmor-train pretrain -------------------------------------------------------------------
    flag("train", f"{PT} --epochs -1", "--epochs", "pretrain-epochs-neg1"),
    flag("train", f"{PT} --epochs 0", "--epochs", "pretrain-epochs-0"),
    flag("train", f"{PT} --max-steps 0", "--max-steps", "pretrain-max-steps-0"),
    flag("train", f"{PT} --batch-size 0", "--batch-size", "pretrain-batch-size-0"),
    flag("train", f"{PT} --lr nan", "--lr", "pretrain-lr-nan"),
    flag("train", f"{PT} --lr -1", "--lr", "pretrain-lr-neg"),
    flag("train", f"{PT} --lr -inf", "--lr", "pretrain-lr-neg-inf"),
    flag("train", f"{PT} --frames 0", "--frames", "pretrain-frames-0"),
    flag("train", f"{PT} --channels 5", "--channels", "pretrain-channels-5"),
    flag("train", f"{PT} --layout bogus", "--layout", "pretrain-layout-bogus"),
    flag("train", f"{PT} --eps 0", "--eps", "pretrain-eps-0"),
    flag("train", f"{PT} --eps nan", "--eps", "pretrain-eps-nan"),
    flag("train", f"{PT} --min-samples 0", "--min-samples", "pretrain-min-samples-0"),
    flag("train", f"{PT} --queue-size 0", "--queue-size", "pretrain-queue-size-0"),
    flag("train", f"{PT} --ckpt-every -1", "--ckpt-every", "pretrain-ckpt-every-neg"),
    flag("train", f"{PT} --loader-workers -1", "--loader-workers", "pretrain-loader-workers-neg"),
    flag("train", f"{PT} --optimizer lbfgs", "--optimizer", "pretrain-optimizer-unknown"),
    flag("train", f"{PT} --amp fp8", "--amp", "pretrain-amp-unknown"),
    flag("train", f"{PT} --losses M+X", "--losses", "pretrain-losses-unknown"),
    flag("train", f"{PT} --report-to slack", "--report-to", "pretrain-report-to-unknown"),
    flag("train", f"{PT} --wandb-mode sometimes", "--wandb-mode", "pretrain-wandb-mode-unknown"),
    flag("train", f"{PT} --epoch-samples 0", "--epoch-samples", "pretrain-epoch-samples-0"),
    flag("train", f"{PT} --stage 3", "--stage", "pretrain-stage-3"),
    flag("train", f"{PT} --seed -1", "--seed", "pretrain-seed-neg"),
    flag("train", f"{PT} --set lr=nan", "--set lr", "pretrain-set-lr-nan"),
    flag("train", f"{PT} --set momentum=1.5", "--set momentum", "pretrain-set-momentum-1.5"),
    flag("train", f"{PT} --set lrr=1", "'lrr'", "pretrain-set-unknown-key"),
    flag("train", f"{PT} --set batch_size=big", "--set batch_size", "pretrain-set-wrong-type"),
    flag("train", f"{PT} --set foo", "--set", "pretrain-set-no-value"),
    flag("train", "pretrain --out OUT --epochs 2", "--shards", "pretrain-missing-shards"),
    # ---- tmor-data stage commands on an existing corpus (runner options first) -----------------
    flag("data", "fetch --root ROOT --timeout-s -1", "--timeout-s", "fetch-timeout-s-neg1"),
    flag("data", "fetch --root ROOT --max-height -1", "--max-height", "fetch-max-height-neg1"),
    flag("data", "fetch --root ROOT --timeout-s 0", "--timeout-s", "fetch-timeout-s-0"),
    flag("data", "fetch --root ROOT --timeout-s nan", "--timeout-s", "fetch-timeout-s-nan"),
    flag("data", "fetch --root ROOT --max-height 0", "--max-height", "fetch-max-height-0"),
    flag("data", "fetch --root ROOT --fps 0", "--fps", "fetch-fps-0"),
    flag("data", "fetch --root ROOT --fps inf", "--fps", "fetch-fps-inf"),
    flag("data", "fetch --root ROOT --short-side 0", "--short-side", "fetch-short-side-0"),
    flag("data", "fetch --root ROOT --clips-in-flight 0", "--clips-in-flight",
         "fetch-clips-in-flight-0"),
    flag("data", "fetch --root ROOT --max-source-mb -5", "--max-source-mb",
         "fetch-max-source-mb-neg"),
    flag("data", "fetch LIST --root FRESH --timeout-s -1", "--timeout-s",
         "fetch-list-timeout-s-neg1-plans-nothing"),
    flag("data", "fetch LIST --root FRESH --shard-size 0", "--shard-size", "fetch-shard-size-0"),
    flag("data", "fetch --root ROOT --workers 0", "--workers", "runner-workers-0"),
    flag("data", "fetch --root ROOT --worker-index -1", "--worker-index",
         "runner-worker-index-neg"),
    flag("data", "fetch --root ROOT --worker-index 2 --worker-count 2", "--worker-index",
         "runner-worker-index-past-count"),
    flag("data", "fetch --root ROOT --worker-count 0", "--worker-count", "runner-worker-count-0"),
    flag("data", "fetch --root ROOT --max-same-failures 0", "--max-same-failures",
         "runner-max-same-failures-0"),
    flag("data", "fetch --root ROOT --executor cloud", "--executor", "runner-executor-unknown"),
    flag("data", "fetch --root ROOT --time-min 0", "--time-min", "runner-slurm-time-min-0"),
    flag("data", "fetch --root ROOT --gpus -1", "--gpus", "runner-slurm-gpus-neg"),
    flag("data", "fetch --root ROOT --cpus 0", "--cpus", "runner-slurm-cpus-0"),
    flag("data", "fetch --root ROOT --mem-gb 0", "--mem-gb", "runner-slurm-mem-gb-0"),
    flag("data", "fetch --root ROOT --array-parallelism 0", "--array-parallelism",
         "runner-slurm-array-parallelism-0"),
    flag("data", "fetch --root ROOT --shard-ids a,b", "--shard-ids", "runner-shard-ids-not-int"),
    flag("data", "fetch --root ROOT --shard-ids 0,-1", "--shard-ids", "runner-shard-ids-neg"),
    flag("data", "extract-pose --root ROOT --batch-size 0", "--batch-size",
         "extract-pose-batch-size-0"),
    flag("data", "extract-pose --root ROOT --fps -1", "--fps", "extract-pose-fps-neg"),
    flag("data", "extract-pose --root ROOT --decode-workers 0", "--decode-workers",
         "extract-pose-decode-workers-0"),
    flag("data", "extract-pose --root ROOT --max-persons 0", "--max-persons",
         "extract-pose-max-persons-0"),
    flag("data", "extract-pose --root ROOT --lift 4d", "--lift", "extract-pose-lift-unknown"),
    flag("data", "extract-pose --root ROOT --backend bogus", "--backend",
         "extract-pose-backend-unknown"),
    flag("data", "extract-pose --root ROOT --device gpu", "--device",
         "extract-pose-device-unknown"),
    flag("data", "caption --root ROOT --top-k 0", "--top-k", "caption-top-k-0"),
    flag("data", "caption --root ROOT --model bogus", "--model", "caption-model-unknown"),
    flag("data", "embed --root ROOT --batch-size 0", "--batch-size", "embed-stage-batch-size-0"),
    flag("data", "embed --root ROOT --model bogus:x", "--model", "embed-stage-model-unknown"),
    flag("data", "pack --root ROOT --min-frames-with-person -1", "--min-frames-with-person",
         "pack-min-frames-neg"),
    flag("data", "pack --root ROOT --min-mean-score 1.5", "--min-mean-score",
         "pack-min-mean-score-1.5"),
    flag("data", "pack --root ROOT --min-mean-score nan", "--min-mean-score",
         "pack-min-mean-score-nan"),
    flag("data", "pack --root ROOT --min-video-text-sim 2", "--min-video-text-sim",
         "pack-min-video-text-sim-2"),
    flag("data", "pack --root ROOT --min-seconds -1", "--min-seconds", "pack-min-seconds-neg"),
    flag("data", "run --root ROOT --workers 0", "--workers", "run-workers-0"),
    flag("data", "plan LIST --root FRESH --shard-size 0", "--shard-size", "plan-shard-size-0"),
    flag("data", "fetch --root ROOT --timeout 5", "--timeout", "fetch-unknown-option"),
    flag("data", "name-clips VIDEO --top-k 0", "--top-k", "name-clips-top-k-0"),
    # ---- transfer config files (sections finetune, linear_probe, detect, zero_shot) ------------
    conf("train", FT, "finetnue:\n  epochs: 1\n", "'finetnue'", "yaml-finetune-section-typo"),
    conf("train", FT, "finetune:\n  epoch: 3\n", "'epoch'", "yaml-finetune-unknown-key"),
    conf("train", FT, "finetune:\n  batch_size: big\n", "finetune.batch_size",
         "yaml-finetune-batch-size-big"),
    conf("train", FT, "finetune:\n  epochs: 2.5\n", "finetune.epochs",
         "yaml-finetune-epochs-float"),
    conf("train", FT, "finetune:\n  epochs: -1\n", "finetune.epochs", "yaml-finetune-epochs-neg"),
    conf("train", FT, "finetune:\n  lr: .nan\n", "finetune.lr", "yaml-finetune-lr-nan"),
    conf("train", FT, "finetune:\n  lr: -.inf\n", "finetune.lr", "yaml-finetune-lr-neg-inf"),
    conf("train", FT, "finetune:\n  augment: maybe\n", "finetune.augment",
         "yaml-finetune-augment-not-bool"),
    conf("train", FT, "finetune:\n  val_fraction: 1.5\n", "finetune.val_fraction",
         "yaml-finetune-val-fraction-1.5"),
    conf("train", FT, "finetune:\n  layout: bogus\n", "finetune.layout",
         "yaml-finetune-layout-bogus"),
    conf("train", FT, "finetune: [1, 2]\n", "'finetune'", "yaml-finetune-section-not-mapping"),
    conf("train", FT, "linear_probe:\n  batch_size: 0\n", "linear_probe.batch_size",
         "yaml-other-section-checked-too"),
    conf("train", FT, "- finetune\n- detect\n", "FILE", "yaml-finetune-top-level-list"),
    conf("train", FT, "42\n", "FILE", "yaml-finetune-top-level-scalar"),
    conf("train", FT, "", "FILE", "yaml-finetune-empty-file"),
    conf("train", FT, "finetune:\n  epochs: [1\n", "FILE", "yaml-finetune-not-yaml"),
    conf("train", LP, "linear_probe:\n  epochs: 0\n", "linear_probe.epochs",
         "yaml-linear-probe-epochs-0"),
    conf("train", DET, "detect:\n  window: 0\n", "detect.window", "yaml-detect-window-0"),
    conf("train", DET, "detect:\n  thetas: [0.1, 2]\n", "detect.thetas",
         "yaml-detect-thetas-out-of-range"),
    conf("train", DET, "detetc:\n  window: 64\n", "'detetc'", "yaml-detect-section-typo"),
    conf("train", ZS, "zero_shot:\n  templates: 'a person {}.'\n", "zero_shot.templates",
         "yaml-zero-shot-templates-not-list"),
    conf("train", ZS, "zero_shot:\n  batch_size: -1\n", "zero_shot.batch_size",
         "yaml-zero-shot-batch-size-neg"),
    # ---- pre-training config files (flat: PretrainConfig fields) --------------------------------
    conf("train", PT, "epoch: 3\n", "'epoch'", "yaml-pretrain-unknown-key"),
    conf("train", PT, "batch_size: big\n", "batch_size", "yaml-pretrain-batch-size-big"),
    conf("train", PT, "lr: .inf\n", "lr must", "yaml-pretrain-lr-inf"),
    conf("train", PT, "epochs: -1\n", "epochs must", "yaml-pretrain-epochs-neg"),
    conf("train", PT, "losses: mm\n", "losses must", "yaml-pretrain-losses-not-list"),
    conf("train", PT, "- epochs\n", "FILE", "yaml-pretrain-top-level-list"),
    conf("train", PT, "", "FILE", "yaml-pretrain-empty-file"),
    # ---- tmor-data config files (sections runner, fetch, pose / extract_pose, ...) -------------
    conf("data", "fetch --root ROOT", "fetch:\n  timeout_s: soon\n", "fetch.timeout_s",
         "yaml-fetch-timeout-s-wrong-type"),
    conf("data", "fetch LIST --root FRESH", "fetch:\n  timeout_s: soon\n", "fetch.timeout_s",
         "yaml-fetch-wrong-type-plans-nothing"),
    conf("data", "fetch --root ROOT", "fecth:\n  timeout_s: 5\n", "'fecth'",
         "yaml-data-section-typo"),
    conf("data", "fetch --root ROOT", "fetch:\n  timeout: 5\n", "'timeout'",
         "yaml-fetch-unknown-key"),
    conf("data", "fetch --root ROOT", "fetch:\n  timeout_s: -1\n", "fetch.timeout_s",
         "yaml-fetch-timeout-s-neg"),
    conf("data", "fetch --root ROOT", "fetch:\n  max_height: -1\n", "fetch.max_height",
         "yaml-fetch-max-height-neg"),
    conf("data", "fetch --root ROOT", "fetch:\n  allow_local: /videos\n", "fetch.allow_local",
         "yaml-fetch-allow-local-not-list"),
    conf("data", "fetch --root ROOT", "fetch:\n  preset: warp\n", "fetch.preset",
         "yaml-fetch-preset-unknown"),
    conf("data", "fetch --root ROOT", "pose:\n  batch_size: big\n", "pose.batch_size",
         "yaml-pose-section-checked-by-fetch"),
    conf("data", "extract-pose --root ROOT", "extract_pose:\n  fps: .nan\n", "extract_pose.fps",
         "yaml-extract-pose-fps-nan"),
    conf("data", "extract-pose --root ROOT", "pose:\n  layout: bogus\n", "pose.layout",
         "yaml-pose-layout-bogus"),
    conf("data", "caption --root ROOT", "caption:\n  top_k: 0\n", "caption.top_k",
         "yaml-caption-top-k-0"),
    conf("data", "embed --root ROOT", "embed:\n  batch_size: 0\n", "embed.batch_size",
         "yaml-embed-batch-size-0"),
    conf("data", "pack --root ROOT", "triplets:\n  min_seconds: -1\n", "triplets.min_seconds",
         "yaml-triplets-min-seconds-neg"),
    conf("data", "pack --root ROOT", "pack:\n  min_mean_score: 2\n", "pack.min_mean_score",
         "yaml-pack-min-mean-score-2"),
    conf("data", "fetch --root ROOT", "runner:\n  workers: many\n", "runner.workers",
         "yaml-runner-workers-wrong-type"),
    conf("data", "fetch --root ROOT", "runner:\n  slurm:\n    mem_gb: -1\n",
         "runner.slurm.mem_gb", "yaml-runner-slurm-mem-gb-neg"),
    conf("data", "fetch --root ROOT", "runner:\n  slurm:\n    memgb: 1\n", "'memgb'",
         "yaml-runner-slurm-unknown-key"),
    conf("data", "fetch --root ROOT", "runner: 3\n", "'runner'",
         "yaml-runner-section-not-mapping"),
    conf("data", "run LIST --root FRESH", "pose:\n  batch_size: 0\n", "pose.batch_size",
         "yaml-run-pose-checked-before-plan"),
    conf("data", "run --root ROOT", "finetune:\n  epochs: 3\n", "'finetune'",
         "yaml-data-train-section"),
    conf("data", "fetch --root ROOT", "- fetch\n", "FILE", "yaml-data-top-level-list"),
    conf("data", "fetch --root ROOT", "fetch\n", "mapping of keys",
         "yaml-data-top-level-scalar"),
    conf("data", "fetch --root ROOT", "", "FILE", "yaml-data-empty-file"),
    conf("data", "fetch --root ROOT", "fetch:\n\tfps: 5\n", "FILE", "yaml-data-not-yaml"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimpleNamespace:
    """A planned corpus root (the existing corpus every data command must leave alone), an
    input list, and paths that must stay absent."""
    tmp = tmp_path_factory.mktemp("hostile")
    listing = tmp / "list.txt"
    listing.write_text("http://127.0.0.1:9/a.mp4\nhttp://127.0.0.1:9/b.mp4\n")
    root = tmp / "corpus"
    with pytest.raises(SystemExit) as done:
        run_app(data_app, "tmor-data", ["plan", str(listing), "--root", str(root)])
    assert done.value.code == 0 and (root / "plan").is_dir()
    classes = tmp / "classes.txt"
    classes.write_text("walking\nfalling\n")
    return SimpleNamespace(tmp=tmp, root=root, list=listing, classes=classes, fresh=tmp / "fresh",
                           out=tmp / "out", missing=tmp / "missing", yaml=tmp / "yaml")


def argv_of(args: str, world: SimpleNamespace) -> list[str]:
    m = world.missing
    tokens = {"ROOT": world.root, "FRESH": world.fresh, "LIST": world.list, "OUT": world.out,
              "DATA": m / "data.pkl", "CKPT": m / "ckpt.pt", "SHARDS": m / "triplets",
              "CLASSES": world.classes, "VIDEO": m / "clip.mp4"}
    return [str(tokens.get(a, a)) for a in args.split()]


def refused(cli: str, argv: list[str], world: SimpleNamespace, capsys) -> str:
    """Run the command; assert it was refused the way issue 21 asks; return its line."""
    app, prog = APPS[cli]
    before = tree_state(world.root)
    with pytest.raises(SystemExit) as done:
        run_app(app, prog, argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert done.value.code == 2, (argv, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert "Traceback" not in out + err
    assert not world.out.exists() and not world.fresh.exists(), "work was done"
    assert tree_state(world.root) == before, "the corpus root changed"
    return lines[0]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "")  # off, and restored after a test that turns it on


@pytest.mark.parametrize("cli,args,yaml_text,name", CASES)
def test_hostile_flag_or_config_is_one_line_and_no_work(cli, args, yaml_text, name, world,
                                                        capsys, request):
    argv = argv_of(args, world)
    if yaml_text is not None:
        world.yaml.mkdir(exist_ok=True)
        # a name that says nothing of the case, so that the error line must name the key
        path = world.yaml / f"case{request.node.callspec.indices['cli']}.yaml"
        path.write_text(yaml_text)
        argv += ["--config", str(path)]
    line = refused(cli, argv, world, capsys)
    if yaml_text is not None:
        assert str(path) in line, line
    assert name == "FILE" or name in line, line


def test_debug_shows_the_traceback_of_a_config_error(world):
    argv = argv_of(f"{FT} --batch-size 0 --debug", world)
    with pytest.raises(ConfigError, match="--batch-size must be >= 1, got 0"):
        run_app(train_app, "tmor-train", argv)


@pytest.mark.parametrize("module,args,name", [
    ("tmor.cli.train", f"{FT} --batch-size 0", "--batch-size"),
    ("tmor.cli.data", "fetch LIST --root FRESH --timeout-s -1", "--timeout-s"),
], ids=["flags_yaml:subprocess-finetune-batch-size-0", "flags_yaml:subprocess-fetch-timeout-neg"])
def test_console_entry_points_print_one_line(module, args, name, world):
    done = subprocess.run([sys.executable, "-m", module, *argv_of(args, world)],
                          capture_output=True, text=True, timeout=120, cwd=world.tmp)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and name in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr and not world.fresh.exists()


# ---- every numeric option of every command: negative and non-finite values ---------------------

#: options where a negative number is a valid value: (command, option) -> smallest valid value
NEGATIVE_OK = {("pack", "--min-video-text-sim"): -1.0}
#: commands whose options issue 21's data half owns (import, export, show): not covered here
OUT_OF_SCOPE = {"import", "export", "show"}


def _number_kind(param) -> type | None:
    """int or float for a numeric option (click's type, or typer's own annotation)."""
    name = getattr(getattr(param, "type", None), "name", None)
    if name in ("integer", "float"):
        return int if name == "integer" else float
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return kind if kind in (int, float) else None


def numeric_options() -> list[tuple[str, str, str, bool]]:
    """(cli, command, option, is_float) for every int / float option of both CLIs."""
    out = []
    for cli, (app, _) in APPS.items():
        for name, command in typer.main.get_command(app).commands.items():
            if name in OUT_OF_SCOPE:
                continue
            for p in command.params:  # hidden old spellings are named by their new option
                kind = _number_kind(p)
                if kind and p.opts[0].startswith("--") and not p.hidden:
                    out.append((cli, name, max(p.opts, key=len), kind is float))
    return out


NUMERIC = numeric_options()
BASE = {("train", "finetune"): FT, ("train", "linear-probe"): LP, ("train", "detect"): DET,
        ("train", "zero-shot"): ZS, ("train", "pretrain"): PT, ("train", "embed"): EMB,
        ("data", "plan"): "plan LIST --root FRESH", ("data", "fetch"): "fetch LIST --root FRESH",
        ("data", "run"): "run LIST --root FRESH", ("data", "name-clips"): "name-clips VIDEO"}


def test_the_numeric_option_list_covers_every_command():
    commands = {(cli, c) for cli, c, _, _ in NUMERIC}
    assert len(NUMERIC) > 60 and {("data", "pack"), ("train", "pretrain"),
                                  ("data", "extract-pose")} <= commands


@pytest.mark.parametrize("cli,command,option,is_float", NUMERIC, ids=[
    f"flags_yaml:numeric-{c}-{cmd}{o}" for c, cmd, o, _ in NUMERIC])
@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_numeric_option_refuses_negative_and_non_finite(cli, command, option, is_float,
                                                              world, capsys, data):
    low = NEGATIVE_OK.get((command, option), 0)
    if is_float:
        values = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
                           st.floats(max_value=low, exclude_max=True, allow_nan=False))
    else:  # an integer option: negative integers, and what is not an integer
        values = st.one_of(st.integers(max_value=math.floor(low) - 1 if low else -1),
                           st.sampled_from(["nan", "inf", "1.5"]))
    value = data.draw(values, label="value")
    base = BASE.get((cli, command), f"{command} --root ROOT")
    line = refused(cli, argv_of(f"{base} {option} {value}", world), world, capsys)
    assert option in line, line


# ---- every config field has a rule; the shipped config files load through them ----------------

def _config_classes() -> list[type]:
    from tmor.pipeline.caption import CaptionConfig
    from tmor.pipeline.embed import EmbedConfig
    from tmor.pipeline.fetch import FetchConfig
    from tmor.pipeline.pack import PackConfig
    from tmor.pipeline.pose.stage import PoseConfig
    from tmor.pipeline.runner import RunnerOptions, SlurmOptions
    from tmor.train.classify import ClassifyConfig
    from tmor.train.config import PretrainConfig
    from tmor.train.detect import DetectConfig
    from tmor.train.zeroshot import ZeroShotConfig

    return [RunnerOptions, SlurmOptions, FetchConfig, PoseConfig, CaptionConfig, EmbedConfig,
            PackConfig, PretrainConfig, ClassifyConfig, DetectConfig, ZeroShotConfig]


def test_every_numeric_config_field_has_a_rule():
    missing = []
    for cls in _config_classes():
        table = getattr(cls, "__config_rules__", {})
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if {int, float} & set(_leaves(hint)) and f.name not in table:
                missing.append(f"{cls.__name__}.{f.name}")
    assert not missing, missing


def _leaves(hint) -> list:
    args = typing.get_args(hint)
    return [x for a in args for x in _leaves(a)] if args else [hint]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("**/*.yaml")) + [
    REPO / "examples" / "quickstart.yaml"], ids=lambda p: f"flags_yaml:ok-{p.parent.name}-{p.stem}")
def test_shipped_config_files_pass_the_checks(path):
    from tmor.cli.options import read_data_config
    from tmor.pipeline.runner import RunnerOptions
    from tmor.pipeline.stages import STAGES
    from tmor.train.config import TRANSFER_SECTIONS

    if path.parent.name == "examples":
        sections = read_data_config(str(path))
        assert set(sections) >= {"runner", "fetch", "pose"}
        for spec in STAGES:
            spec.config_from(spec.options(sections))
        build(RunnerOptions, sections["runner"])
        return
    if path.parent.name == "pretrain" and path.stem.startswith("stage"):  # PretrainConfig files
        from tmor.train.config import PretrainConfig

        PretrainConfig.from_yaml(str(path), shards="x").pairs()
        return
    if path.parent.name == "pretrain":  # bench/pretrain_pays.py --config
        sys.path.insert(0, str(REPO / "bench"))
        from pretrain_pays import parser

        known = {a.dest for a in parser()._actions}
        assert set(yaml.safe_load(path.read_text())) <= known
        return
    sections = read_config(str(path), TRANSFER_SECTIONS)
    assert sections
    for name, values in sections.items():
        module, _, cls = TRANSFER_SECTIONS[name].partition(":")
        build(getattr(importlib.import_module(module), cls), values, {"data": "x"})


def test_yaml_reads_1e_minus_3_as_a_number_and_ints_as_floats(tmp_path):
    from tmor.train.config import TRANSFER_SECTIONS

    path = tmp_path / "run.yaml"
    path.write_text("finetune:\n  lr: 1e-3\n  weight_decay: 0\n")
    sections = read_config(str(path), TRANSFER_SECTIONS)
    assert sections == {"finetune": {"lr": 0.001, "weight_decay": 0.0}}
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"  # why the string is taken as a number
