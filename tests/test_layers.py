"""Imports point one way (DESIGN.md): a package imports only its own layer or the ones below.

Every import of `mlx_manager` is read from the source (TYPE_CHECKING and function-level
imports included), so an upward import fails here before it becomes a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlx_manager

PACKAGE = Path(mlx_manager.__file__).parent

# Top to bottom. A new package or top-level module must be placed here.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("api", "admin", "runtime"),
    ("routing", "accounts", "audit", "observability"),
    ("frontend", "services", "protocols", "security", "store", "downloads"),
    ("pool",),
    ("engine", "distributed"),
    ("kv", "runner"),
    ("models", "media"),
    ("config", "types", "errors"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# The serving core never reaches into the manager's infrastructure, even where the ranks
# alone would let it.
CORE = ("engine", "distributed", "kv", "runner", "models", "pool", "protocols")
INFRASTRUCTURE = ("store", "security", "routing", "observability")


def unit_of(path: Path, package: Path) -> str:
    """The layer unit of a source file: its top-level package, or its module name."""
    first = path.relative_to(package).parts[0]
    return first.removesuffix(".py")


def imported_units(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, unit) of every `mlx_manager` import in a module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "mlx_manager":
                names = [f"mlx_manager.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mlx_manager" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def layer_violations(package: Path = PACKAGE) -> list[str]:
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == package:
            continue
        source = unit_of(path, package)
        where = path.relative_to(package.parent)
        if source not in RANK:
            problems.append(f"{where}: '{source}' has no layer in tests/test_layers.py")
            continue
        for line, target in imported_units(ast.parse(path.read_text(encoding="utf-8"))):
            if target == source:
                continue
            if target not in RANK:
                problems.append(f"{where}:{line} imports '{target}', which has no layer")
            elif RANK[target] < RANK[source]:
                problems.append(f"{where}:{line} imports '{target}' from a layer above")
            elif source in CORE and target in INFRASTRUCTURE:
                problems.append(f"{where}:{line}: '{source}' must not import '{target}'")
    return problems


def test_imports_point_down() -> None:
    assert layer_violations() == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check itself: a planted upward import and a core-to-infrastructure one fail."""
    package = tmp_path / "mlx_manager"
    (package / "models").mkdir(parents=True)
    (package / "protocols").mkdir()
    (package / "__init__.py").write_text("")
    (package / "models" / "card.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from mlx_manager.engine.core import EngineCore\n"
    )
    (package / "protocols" / "wire.py").write_text("import mlx_manager.security.principal\n")
    assert layer_violations(package) == [
        "mlx_manager/models/card.py:3 imports 'engine' from a layer above",
        "mlx_manager/protocols/wire.py:1: 'protocols' must not import 'security'",
    ]
