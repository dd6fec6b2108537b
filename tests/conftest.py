"""Shared test fixtures: the real data folder beside the repository, and small corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("YOLO_OFFLINE", "1")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (expected ../shared/data beside the repo)")
    return path


@pytest.fixture
def videos_dir() -> Path:
    return shared_data("videos")


@pytest.fixture(scope="session")
def window_corpus(tmp_path_factory) -> str:
    """Triplet shards of 16-frame windows of the real NTU / FallFree skeletons (built once)."""
    data = shared_data("skeletons").parent
    from _windows import skeleton_windows, write_window_corpus

    root = tmp_path_factory.mktemp("window_corpus")
    write_window_corpus(str(root), skeleton_windows(str(data), frames=16, stride=8))
    return str(root / "triplets")
