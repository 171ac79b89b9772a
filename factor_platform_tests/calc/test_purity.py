"""calc/ is pure numerics: no Dagster and no database imports (STYLE.md habit 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import factor_platform.calc

CALC = Path(factor_platform.calc.__file__).parent
FORBIDDEN = ("dagster", "dagster_postgres", "dagster_webserver", "sqlalchemy", "psycopg2", "factor_platform.storage")
SOURCES = sorted(CALC.rglob("*.py"))


def imported_modules(source: str) -> set[str]:
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


def forbidden(names: set[str]) -> set[str]:
    return {n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}


def test_calc_sources_are_found():
    assert {"returns.py", "factors.py", "metrics.py"} <= {p.name for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CALC)))
def test_calc_module_imports_no_dagster_or_database(path):
    assert forbidden(imported_modules(path.read_text())) == set()


def test_the_check_itself_catches_them():
    source = (
        "import dagster as dg\nfrom sqlalchemy import text\nimport importlib\nimportlib.import_module('psycopg2')\n"
    )
    assert forbidden(imported_modules(source)) == {"dagster", "sqlalchemy", "psycopg2"}
    assert (
        forbidden(imported_modules("import numpy\nfrom factor_platform.calc.returns import simple_returns\n")) == set()
    )
