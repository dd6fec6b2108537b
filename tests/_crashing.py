"""A stage whose model is broken: it raises on every sample (for the CLI error tests, which run
it in a fresh interpreter and in spawned pool workers, so it lives in an importable module)."""

from __future__ import annotations

from collections.abc import Iterator

from tmor.pipeline.stage import Result, Sample, Stage


class RaisesOnEverySample(Stage):
    name = "digest"

    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        for s in samples:
            raise RuntimeError(f"the model is broken (sample {s.key})")
            yield Result(s.key)  # pragma: no cover - never reached
