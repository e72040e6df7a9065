"""Nothing imports upward: the layer table of docs/architecture.md, checked on every import.

Imports inside functions count too (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they name types for the checker and never run).
"""

from __future__ import annotations

import ast
from pathlib import Path
import re

import pytest

import optuna_kmtpe


PACKAGE = Path(optuna_kmtpe.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

#: The levels of docs/architecture.md's table "Layers (nothing imports upward)", low to high.
LEVELS: dict[str, int] = {
    **dict.fromkeys(
        ("config", "records", "geometry", "_registry", "_progress", "_metric_names"), 0
    ),
    "sampler": 1,
    **dict.fromkeys(("graph", "quant", "sensitivity", "models", "data"), 2),
    **dict.fromkeys(("hardware", "space"), 3),
    **dict.fromkeys(("objectives", "dashboard", "export"), 4),
    **dict.fromkeys(("workflow", "cli", "__init__"), 5),
}


def _part(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, module)`` of every package import outside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "optuna_kmtpe":  # from optuna_kmtpe import quant
                names = [f"optuna_kmtpe.{alias.name}" for alias in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("optuna_kmtpe.")]


def test_every_part_of_the_package_has_a_level() -> None:
    parts = {_part(path) for path in PACKAGE.rglob("*.py")}
    assert parts == set(LEVELS), "add the new module to LEVELS and to docs/architecture.md"


def test_the_levels_are_the_documented_table() -> None:
    table = ARCHITECTURE.read_text().split("## Layers (nothing imports upward)")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:7]
    for level, row in enumerate(rows):
        documented = {
            name.removesuffix("/").removesuffix(".py")
            for name in re.findall(r"`([\w./]+)`", row.split("|")[2])
        }
        expected = {name for name, lvl in LEVELS.items() if lvl == level}
        assert documented <= expected, f"docs/architecture.md level {level}: {sorted(documented)}"


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_nothing_imports_upward(path: Path) -> None:
    own = LEVELS[_part(path)]
    upward = [
        f"line {line}: {name}"
        for line, name in _runtime_imports(ast.parse(path.read_text()))
        if LEVELS.get(name.split(".")[1], -1) > own
    ]
    assert not upward, f"{path.relative_to(PACKAGE)} (level {own}) imports upward: {upward}"
