"""The package's layers import one way only (docs/architecture.md): each layer may import the
layers below it and never one above, nor a sibling of its own rank.

    app -> running -> defs -> planning -> layers -> storage | sources -> calc -> domain -> settings

The one place that checks imports: calc/, domain/, settings, sources/ import no Dagster and no database
(STYLE.md habit 1), layers/ and storage/ no Dagster -- in each module's source, and at run time; and no
two modules import each other, directly or through others, inside a folder too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import factor_platform

PACKAGE = Path(factor_platform.__file__).parent
# Top to bottom; packages of one rank do not import each other.
RANKS = [
    {"app"},
    {"running"},
    {"defs", "definitions"},
    {"planning"},
    {"layers"},
    {"storage", "sources"},
    {"calc"},
    {"domain"},
    {"settings"},
]
RANK = {name: i for i, names in enumerate(RANKS) for name in names}
# What each rank may not import from outside the package, on top of the order. A name stands for
# itself and its `_` family: "dagster" also forbids dagster_postgres, dagster_webserver, dagster_pipes ...
NO_DAGSTER = ("dagster",)
NO_DATABASE = ("sqlalchemy", "psycopg2")
FORBIDDEN_EXTERNAL = {
    "layers": NO_DAGSTER,
    "storage": NO_DAGSTER,
    "sources": NO_DAGSTER + NO_DATABASE,
    "calc": NO_DAGSTER + NO_DATABASE,
    "domain": NO_DAGSTER + NO_DATABASE,
    "settings": NO_DAGSTER + NO_DATABASE,
}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).as_posix() != "__init__.py")


def imported_modules(source: str) -> set[str]:
    """Every absolute module name `source` imports: `import x`, `from x import y`, and
    `import_module("x")` / `__import__("x")` with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
            "import_module",
            "__import__",
        ):
            names.update(arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
    return names


def is_forbidden(top: str, forbidden: tuple[str, ...]) -> bool:
    return any(top == name or top.startswith(name + "_") for name in forbidden)


def layer_of(module: str) -> str:
    """`factor_platform.layers.prices` -> `layers`; `factor_platform.settings` -> `settings`."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    return ".".join(("factor_platform", *path.relative_to(PACKAGE).with_suffix("").parts))


def violations(module: str, imports: set[str]) -> list[str]:
    own = layer_of(module)
    found = []
    for name in sorted(imports):
        top = name.split(".")[0]
        if top == "factor_platform":
            if name == "factor_platform":
                found.append(f"{module} imports the package root; import the module itself")
                continue
            target = layer_of(name)
            if target != own and RANK[target] <= RANK[own]:
                found.append(f"{module} ({own}) imports {name} ({target}): {target} is not below {own}")
        elif is_forbidden(top, FORBIDDEN_EXTERNAL.get(own, ())):
            found.append(f"{module} ({own}) imports {name}")
    return found


def test_every_module_is_in_a_layer():
    assert {layer_of(module_name(p)) for p in MODULES} == set(RANK)
    calc = {p.name for p in MODULES if layer_of(module_name(p)) == "calc"}
    assert {"__init__.py", "returns.py", "factors.py", "metrics.py"} <= calc


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_run_one_way(path):
    module = module_name(path)
    names = imported_modules(path.read_text())
    names |= {
        f"{n.module}.{a.name}"
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.ImportFrom) and n.module == "factor_platform"
        for a in n.names
    }
    names.discard("factor_platform")  # `from factor_platform import x` is judged by x
    assert violations(module, names) == []


def test_the_check_itself_catches_them():
    assert violations("factor_platform.calc.portfolio", {"factor_platform.domain.positions", "numpy"}) == []
    assert violations("factor_platform.planning.planner", {"factor_platform.defs.jobs"}) == [
        "factor_platform.planning.planner (planning) imports factor_platform.defs.jobs (defs): defs is not below planning"
    ]
    assert len(violations("factor_platform.storage.database", {"factor_platform.sources.base"})) == 1  # a sibling
    assert len(violations("factor_platform.domain.book", {"sqlalchemy", "dagster"})) == 2
    # calc: no Dagster, no database, however it is imported, and not storage (a layer above)
    source = (
        "import dagster as dg\nfrom sqlalchemy import text\nimport importlib\nimportlib.import_module('psycopg2')\n"
    )
    assert violations("factor_platform.calc.risk", imported_modules(source)) == [
        f"factor_platform.calc.risk (calc) imports {name}" for name in ("dagster", "psycopg2", "sqlalchemy")
    ]
    assert (
        violations(
            "factor_platform.calc.risk",
            imported_modules("import numpy\nfrom factor_platform.calc.returns import simple_returns\n"),
        )
        == []
    )
    assert len(violations("factor_platform.calc.risk", {"factor_platform.storage.database"})) == 1
    assert len(violations("factor_platform.calc.risk", {"dagster_webserver", "dagster_postgres"})) == 2
    # sources: neither Dagster nor SQLAlchemy; storage and layers: SQLAlchemy, never any Dagster package
    assert len(violations("factor_platform.sources.csv", {"dagster.components", "sqlalchemy.orm"})) == 2
    assert violations("factor_platform.storage.database", {"sqlalchemy", "psycopg2"}) == []
    assert len(violations("factor_platform.storage.database", {"dagster_pipes"})) == 1
    assert len(violations("factor_platform.layers.prices", {"dagster_shared.utils"})) == 1
    assert violations("factor_platform.layers.prices", {"dagsterlike"}) == []


# The ranks that may import neither Dagster nor a database, and what they may not have loaded.
PURE = ("calc", "domain", "settings", "sources")
NOT_LOADED = NO_DAGSTER + NO_DATABASE


def loaded_without_dagster_or_database(modules: list[str]) -> list[str]:
    """The Dagster and database modules that importing `modules` loads, in a fresh interpreter (this one
    has Dagster loaded already)."""
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if any(m.split('.')[0] == n or m.startswith(n + '_') "
        f"for n in {NOT_LOADED!r}))))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_the_pure_layers_load_no_dagster_nor_database_at_run_time():
    """Beyond each module's own imports: what they pull in through third-party packages, in a fresh
    interpreter (this one has Dagster loaded already)."""
    modules = sorted(module_name(p) for p in MODULES if layer_of(module_name(p)) in PURE)
    assert {"factor_platform.calc.risk", "factor_platform.domain.stress_scenarios", "factor_platform.settings"} <= set(
        modules
    )
    assert loaded_without_dagster_or_database(modules) == []


def reads_the_environment(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv", "putenv")
            and getattr(node.value, "id", None) == "os"
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in ("environ", "getenv") for a in node.names)
        ):
            return True
    return False


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name != "settings.py"], ids=lambda p: p.relative_to(PACKAGE).as_posix()
)
def test_only_settings_touches_the_environment(path):
    assert not reads_the_environment(path.read_text()), "read or export variables through factor_platform.settings"


def test_the_environment_check_catches_them():
    assert reads_the_environment("import os\nx = os.environ.get('A')\n")
    assert reads_the_environment("from os import environ\n")
    assert not reads_the_environment("from factor_platform import settings\nx = settings.get('A')\n")


def package_imports(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """The package's modules that `module` (its `source`) imports when it runs: `import`, `from ...
    import` (a name that is a submodule counts as that module), relative ones, and those inside
    functions; not the ones under `if TYPE_CHECKING:`, which never run."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULE_NAMES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return {name for name in found if name in MODULE_NAMES and name != module}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (its modules in import order, the first repeated last) per group of modules that
    import each other, directly or not (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = {stack.pop()}
            while node not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for group in groups:  # the shortest way from the group's first module back to itself
        start = min(group)
        came_from: dict[str, str] = {}
        queue = [start]
        while start not in came_from:
            node = queue.pop(0)
            for target in sorted(graph[node] & group):
                if target not in came_from:
                    came_from[target] = node
                    queue.append(target)
        cycle = [start, came_from[start]]
        while cycle[-1] != start:
            cycle.append(came_from[cycle[-1]])
        cycles.append(cycle[::-1])
    return sorted(cycles)


PACKAGE_FILES = sorted(PACKAGE.rglob("*.py"))
MODULE_NAMES = {module_name(p).removesuffix(".__init__") for p in PACKAGE_FILES}


def test_no_module_imports_itself_through_others():
    """Within a folder too: two modules that import each other (even inside a function) have one
    concern split in two, and the one imported second sees the other half-initialized."""
    graph = {}
    for path in PACKAGE_FILES:
        module = module_name(path).removesuffix(".__init__")
        graph[module] = package_imports(path.read_text(), module, is_package=path.name == "__init__.py")
    assert [" -> ".join(cycle) for cycle in import_cycles(graph)] == []


def test_the_cycle_check_itself_finds_them():
    source = (
        "from typing import TYPE_CHECKING\nfrom factor_platform.running import runs\n"
        "from factor_platform.layers.names import LAYERS\nfrom . import instance\n"
        "if TYPE_CHECKING:\n    from factor_platform.running.celery_workers import CeleryConfig\n"
        "def execute():\n    from factor_platform.running import celery_workers\n"
    )
    assert package_imports(source, "factor_platform.running.execution") == {
        "factor_platform.running.runs",
        "factor_platform.layers.names",
        "factor_platform.running.instance",
        "factor_platform.running.celery_workers",  # inside a function: it runs
    }
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}, "f": {"g"}, "g": {"f"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"], ["f", "g", "f"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


REPO = PACKAGE.parent
SCRIPTS = sorted(p for folder in ("bench", "deploy", "scripts") for p in (REPO / folder).rglob("*.py"))


def unresolved_imports(source: str) -> list[str]:
    """`from factor_platform.x import name` lines whose module or name does not exist (a moved module)."""
    import importlib

    missing = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "factor_platform"
        ):
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                missing.append(node.module)
                continue
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")  # a submodule not imported yet
                except ImportError:
                    missing.append(f"{node.module}.{alias.name}")
    return missing


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_the_scripts_outside_the_package_import_what_exists(path):
    """bench/ and deploy/ run outside the suite: a module moved under them breaks them silently otherwise."""
    assert unresolved_imports(path.read_text()) == []


def test_the_import_check_itself_catches_a_moved_name():
    assert unresolved_imports("from factor_platform.layers.portfolio import TABLES\n") == [
        "factor_platform.layers.portfolio.TABLES"
    ]
    assert unresolved_imports("from factor_platform.orchestration import plan\n") == ["factor_platform.orchestration"]
    assert unresolved_imports("from factor_platform.layers import names\n") == []


# The planner's decisions are pure functions of a state (docs/scale.md "One planner"): testable on
# generated states against brute force, with no instance and no database behind them.
PURE_PLANNING = ("factor_platform.planning.plan", "factor_platform.planning.portfolio_runs")


def test_the_planners_decisions_load_no_dagster_nor_database():
    assert loaded_without_dagster_or_database(list(PURE_PLANNING)) == []
