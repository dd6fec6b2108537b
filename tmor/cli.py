"""Command lines ``tmor-data`` and ``tmor-train``: parse options, call library functions.

No logic lives here, and nothing heavy is imported at module level, so ``--help`` is instant.
Each area owns one marked section below; add commands only inside your own section.
"""

from __future__ import annotations

import typer

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

# ---- section: runner and fetch (lead) ---------------------------------------------------------

# ---- section: pose (extract-pose, show) --------------------------------------------------------

# ---- section: caption and embed ------------------------------------------------------------------

# ---- section: pack, run, validate, stats, import, export ----------------------------------------

# ---- section: pretrain and embed (tmor-train) ----------------------------------------------------

# ---- section: transfer (linear-probe, finetune, detect, zero-shot) --------------------------------


def main_data() -> None:
    data_app()


def main_train() -> None:
    train_app()
