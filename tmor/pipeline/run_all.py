"""``tmor-data run``: every stage in order (fetch, extract-pose, caption, embed, pack), each
resuming, with one summary table at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console

from tmor.config import build
from tmor.pipeline import report
from tmor.pipeline.executors import run_stage
from tmor.pipeline.runner import RunnerOptions


@dataclass(frozen=True)
class StageSpec:
    section: str  # YAML section and CLI command stem
    module: str
    stage_class: str
    config_class: str

    def load(self) -> tuple[type, type]:
        import importlib

        mod = importlib.import_module(self.module)
        return getattr(mod, self.stage_class), getattr(mod, self.config_class)


STAGES = [
    StageSpec("fetch", "tmor.pipeline.fetch", "FetchStage", "FetchConfig"),
    StageSpec("pose", "tmor.pipeline.pose.stage", "PoseStage", "PoseConfig"),
    StageSpec("caption", "tmor.pipeline.caption", "CaptionStage", "CaptionConfig"),
    StageSpec("embed", "tmor.pipeline.embed", "EmbedStage", "EmbedConfig"),
    StageSpec("pack", "tmor.pipeline.pack", "PackStage", "PackConfig"),
]

OFFLINE_HINT = (
    "no clip could be fetched. Without internet, give local videos: "
    "`tmor-data run /path/to/videos --root R --allow-local /path/to/videos` "
    "(or `make quickstart INPUT=/path/to/videos`)."
)


def run_all(
    root: str,
    sections: dict[str, dict[str, Any] | None],
    runner: RunnerOptions,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Run every stage over the planned corpus; ``sections`` holds each stage's options
    (YAML section merged with the command line). Returns the per-stage summaries."""
    from tmor.pipeline.pack import finish_pack

    console = console or Console()
    summaries = []
    for spec in STAGES:
        stage_cls, config_cls = spec.load()
        stage = stage_cls(build(config_cls, sections.get(spec.section)))
        console.rule(f"[bold]{spec.section}")
        summary = run_stage(stage, root, runner, console)
        summaries.append(summary)
        if spec.section == "fetch" and summary["ok"] == 0:
            raise RuntimeError(OFFLINE_HINT)
        if spec.section == "pack":
            finish_pack(root, stage)
    console.rule("[bold]corpus")
    console.print(report.stats_table(summaries, f"tmor-data run: {root}"))
    return summaries
