"""The code's import rules (issue 18), read from the source: ``automl`` names ``workers``
in one place, the service does not import the embedded entry point, and no two modules
import each other, directly or round a loop (lazy imports inside functions included;
imports only for type checking are not imports at run time)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("automl", "workers")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Name) and \
        test.id == "TYPE_CHECKING"


def imported_names(tree: ast.AST) -> Iterator[str]:
    """Every module an import statement names, outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        yield from imported_names(node)


def imports_of(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Which of our modules each of our modules imports."""
    return {name: {imported for imported in imported_names(ast.parse(path.read_text()))
                   if imported in modules and imported != name}
            for name, path in modules.items()}


def test_automl_names_workers_only_in_runtime() -> None:
    modules = sources()
    graph = imports_of(modules)
    naming = {name for name, imported in graph.items() if name.startswith("automl")
              and any(module.startswith("workers") for module in imported)}
    importing_by_name = {name for name, path in modules.items() if name.startswith("automl")
                         and re.search(r"import_module\(f?[\"']workers", path.read_text())}
    assert naming | importing_by_name == {"automl.run.runtime"}


@pytest.mark.parametrize("module", ["automl.run.submit", "workers.tickets",
                                    "workers.service_worker", "workers.ray_service"])
def test_service_code_does_not_import_the_embedded_entry_point(module: str) -> None:
    assert "automl.run.tune" not in imports_of(sources())[module]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop (its modules in order), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for imported in sorted(graph.get(name, ())):
            if state.get(imported) == 1:
                return [*path[path.index(imported):], imported]
            if imported not in state and (loop := visit(imported)):
                return loop
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (loop := visit(name)):
            return loop
    return None


def test_no_import_cycles() -> None:
    graph = imports_of(sources())
    # a package's __init__ re-exporting its modules is not a loop with them
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(f"{m}.")}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_loop() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "exists", "table",
                      "column", "func"}
SQL_HOMES = ("automl.queue", "automl.study.storage")  # ours; Optuna's rows (write-behind)


def test_sql_is_written_only_in_the_db_package() -> None:
    """No module outside automl/queue builds a statement or opens an ORM session (Optuna's
    own rows, written behind, are automl/study/storage's)."""
    writing = []
    for name, path in sources().items():
        if name.startswith(SQL_HOMES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                names = {alias.name for alias in node.names}
                if node.module == "sqlalchemy.orm" or names & STATEMENT_BUILDERS:
                    writing.append(f"{name}: from {node.module} import {sorted(names)}")
    assert writing == []


PRIVATE_OPTUNA = re.compile(r"\._storage\b|\._trial_id\b|\._study_id\b|optuna\.storages\._")


def test_optunas_internals_are_used_only_behind_one_door() -> None:
    using = [name for name, path in sources().items()
             if not name.startswith("automl.study.storage")
             and PRIVATE_OPTUNA.search(path.read_text())]
    assert using == []
