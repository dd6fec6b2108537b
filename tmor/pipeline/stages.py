"""The stage registry: every corpus stage once, with its command, folder, YAML section and
classes. The CLI, ``run`` and ``status`` all read this list.

One name per stage: the stage name is its folder under the corpus root, its ledger name and its
YAML section (``pose:``, ``triplets:``); the command is what a user types (``extract-pose``,
``pack``), and a YAML section named after the command is read too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from tmor.config import build
from tmor.pipeline.runner import RunnerOptions


@dataclass(frozen=True)
class StageSpec:
    """One stage of the corpus pipeline."""

    name: str  # folder = ledger stage = YAML section
    command: str  # the tmor-data command
    module: str
    stage_class: str
    config_class: str
    finish: str | None = None  # function(root, stage) run once after the stage's shards

    @property
    def sections(self) -> tuple[str, ...]:
        """YAML sections that configure this stage (its name, then its command's)."""
        alias = self.command.replace("-", "_")
        return (self.name,) if alias == self.name else (self.name, alias)

    def load(self) -> tuple[type, type]:
        """(Stage class, config class); imports the stage module."""
        mod = importlib.import_module(self.module)
        return getattr(mod, self.stage_class), getattr(mod, self.config_class)

    def config_from(self, options: dict[str, Any]) -> Any:
        """The stage's config from ``options`` over its defaults, checked (a ConfigError names
        a wrong option)."""
        return build(self.load()[1], options)

    def options(self, yaml_cfg: dict[str, Any]) -> dict[str, Any]:
        """This stage's options from a parsed YAML file (command-named section first)."""
        merged: dict[str, Any] = {}
        for section in reversed(self.sections):
            merged.update(yaml_cfg.get(section) or {})
        return merged


STAGES: tuple[StageSpec, ...] = (
    StageSpec("fetch", "fetch", "tmor.pipeline.fetch", "FetchStage", "FetchConfig"),
    StageSpec("pose", "extract-pose", "tmor.pipeline.pose.stage", "PoseStage", "PoseConfig"),
    StageSpec("caption", "caption", "tmor.pipeline.caption", "CaptionStage", "CaptionConfig"),
    StageSpec("embed", "embed", "tmor.pipeline.embed", "EmbedStage", "EmbedConfig"),
    StageSpec("triplets", "pack", "tmor.pipeline.pack", "PackStage", "PackConfig",
              finish="finish_pack"),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def yaml_sections() -> dict[str, type | str]:
    """Every section a ``tmor-data`` config file may hold -> its config class (as
    ``"module:Class"``, imported only when the section is there)."""
    out: dict[str, type | str] = {"runner": RunnerOptions}
    for spec in STAGES:
        out.update({section: f"{spec.module}:{spec.config_class}" for section in spec.sections})
    return out


def get_stage(name_or_command: str) -> StageSpec:
    """The spec of a stage, by stage name or command."""
    for spec in STAGES:
        if name_or_command in (spec.name, spec.command):
            return spec
    raise KeyError(f"unknown stage {name_or_command!r}; stages: {', '.join(STAGE_NAMES)}")


def run_registered(spec: StageSpec, root: str, options: dict[str, Any],
                   runner: RunnerOptions, console: Console | None = None) -> dict[str, Any]:
    """Build the stage from ``options`` (defaults < given layers), run it over the corpus, then
    its finish step once: by the process that ran the whole stage, or by the ``--worker-index``
    worker that finds every shard committed; under a lock, and skipped when the committed
    ledgers are the ones it already finished. Returns the stage summary."""
    from tmor.pipeline.executors import run_stage

    stage = spec.load()[0](spec.config_from(options))
    summary = run_stage(stage, root, runner, console)
    if spec.finish and (summary["coordinator"] or summary["complete"]):
        finish_once(spec, root, stage)
    return summary


def finish_once(spec: StageSpec, root: str, stage: Any) -> bool:
    """Run ``spec.finish`` unless it already ran over these very ledgers; True when it ran."""
    from tmor import fsio
    from tmor.manifests.ledger import ledgers_stamp
    from tmor.manifests.lock import file_lock
    from tmor.shards.card import read_corpus_card, update_corpus_card

    assert spec.finish is not None
    with file_lock(fsio.join(root, spec.name, "_finish.lock")):
        stamp = ledgers_stamp(root, spec.name)
        done = read_corpus_card(root).get("finished", {})
        if done.get(spec.name) == stamp:
            return False
        getattr(importlib.import_module(spec.module), spec.finish)(root, stage)
        update_corpus_card(root, "finished", {**done, spec.name: stamp})
    return True
