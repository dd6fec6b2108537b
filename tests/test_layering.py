"""Imports point downward only: every tmor module imports modules of its own layer or lower ones
(module-level and function-level imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tmor"

#: lowest first; a module may import its own layer and the layers before it
LAYERS: list[tuple[str, ...]] = [
    ("tmor", "tmor.skeleton", "tmor.data"),  # root modules: errors, config, fsio, plugins, ...
    ("tmor.manifests",),
    ("tmor.shards", "tmor.model"),
    ("tmor.pipeline",),
    ("tmor.train",),
    ("tmor.cli",),
]


def layer_of(module: str) -> int:
    best, best_len = 0, -1
    for rank, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = rank, len(p)
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("tmor")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("tmor"):
                out.append((node.lineno, node.module))
    return out


def test_layer_table_recognises_modules() -> None:
    assert layer_of("tmor.errors") == 0 and layer_of("tmor.skeleton.npz") == 0
    assert layer_of("tmor.pipeline.pose.stage") == 3 and layer_of("tmor.cli.data") == 5


def test_no_module_imports_a_layer_above_its_own() -> None:
    bad = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    for path in files:
        mod = module_name(path)
        for line, target in imports_of(path):
            if layer_of(target) > layer_of(mod):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mod} -> {target}")
    assert not bad, "imports pointing up a layer:\n" + "\n".join(bad)
