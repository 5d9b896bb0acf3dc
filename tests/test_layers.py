"""The package's layers: lower layers never import upper ones, and models/ has no import cycle.

The arrows (DESIGN.md): ``data`` and ``models`` are the bottom; ``inference``, ``train`` and
``eval`` use them; ``archive`` and the CLI sit on top. Only ``diffris.models`` knows which
architecture a model is.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "diffris"

#: layer -> the diffris sub-packages it must never import (at any depth, lazily or not)
FORBIDDEN = {
    "data": ("eval", "train", "inference", "archive"),
    "models": ("data", "eval", "train", "inference", "archive"),
    "eval": ("train", "inference", "archive"),
    "inference": ("train", "archive"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # skip `if TYPE_CHECKING:` blocks
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("diffris.")}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_lower_layer_never_imports_an_upper_one(layer: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path, top_level_only=False):
            if name.split(".")[1] in FORBIDDEN[layer]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, offenders


def test_the_models_package_has_no_import_cycle() -> None:
    """Lazy imports inside functions count: a cycle through them is still a tangle to read."""
    paths = sorted((PACKAGE / "models").rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph = {
        _module_name(path): {
            name for name in _imports(path, top_level_only=False) if name in modules
        }
        for path in paths
    }
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                raise AssertionError(" -> ".join([*trail, module, target]))
            if target not in state:
                visit(target, [*trail, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_nothing_outside_models_asks_which_architecture_it_has() -> None:
    pattern = re.compile(
        r"\.architecture\s*[!=]=|preset\s*[!=]=|preset\s+(not\s+)?in\s+\(|"
        r"isinstance\([^)]*\b(DiffRIS|RSRefSeg)\b"
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "models" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
