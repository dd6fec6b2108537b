"""Shared test fixtures: the real data folder beside the repository, and small corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ../shared/data beside the repository, or $TMOR_DATA (a checkout elsewhere, the GPU machine)
SHARED_DATA = Path(os.environ.get("TMOR_DATA") or REPO.parent / "shared" / "data")

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("YOLO_OFFLINE", "1")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (expected ../shared/data beside the repo)")
    return path


def tree_state(root: Path) -> dict[str, str]:
    """Every file (its sha256) and folder under ``root`` by relative path: equal before and
    after a command when it left ``root`` as it was."""
    from tmor.hashing import file_sha256

    return {str(p.relative_to(root)): file_sha256(p) if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


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
