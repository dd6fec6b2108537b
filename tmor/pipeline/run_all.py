"""``tmor-data run``: every stage in order (fetch, extract-pose, caption, embed, pack), each
resuming, with one summary table at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tmor.pipeline import report
from tmor.pipeline.runner import RunnerOptions
from tmor.pipeline.stages import STAGES, run_registered

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
    """Run every stage over the planned corpus; ``sections`` holds each stage's options by stage
    name (YAML section merged with the command line). Returns the per-stage summaries."""
    console = console or Console()
    summaries = []
    for spec in STAGES:
        console.rule(f"[bold]{spec.command}")
        summary = run_registered(spec, root, sections.get(spec.name) or {}, runner, console)
        summaries.append(summary)
        if spec.name == "fetch" and summary["ok"] == 0:
            raise RuntimeError(OFFLINE_HINT)
    console.rule("[bold]corpus")
    console.print(report.stats_table(summaries, f"tmor-data run: {root}"))
    return summaries
