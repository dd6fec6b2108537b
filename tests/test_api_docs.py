"""docs/api.md: every ```python example runs, in order and in one namespace, in a folder holding
the ``penn.pkl`` the page describes (12 real Penn Action sequences); the page covers every public
name of ``tmor``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _penn import penn_pickle

import tmor

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_every_public_name_is_documented():
    text = DOC.read_text()
    missing = [n for n in tmor.__all__ if f"`{n}" not in text]
    assert not missing, f"docs/api.md does not document {missing}"


def test_every_example_of_docs_api_runs(tmp_path, monkeypatch, capsys):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    penn_pickle(tmp_path / "penn.pkl")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 10
    namespace: dict = {}
    for i, code in enumerate(blocks, 1):
        exec(compile(code, f"docs/api.md, example {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "(12, 256)" in out and "0001 {'test': 6, 'train': 6}" in out
