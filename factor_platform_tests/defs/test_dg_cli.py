"""`dg`, the command line of Dagster's current docs, on the project as a user runs it from the repo root:
`dg list defs`, `dg check defs`, `dg launch` of one partition and of a rectangle (a --partition-range)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from factor_platform.domain import sessions
from factor_platform.running.runs import load_definitions
from factor_platform.storage import Database
from factor_platform_tests.defs.conftest import TEST_END, TEST_START
from factor_platform_tests.defs.test_cli import VENV_BIN

pytestmark = pytest.mark.slow

# dg finds the project ([tool.dg] in pyproject.toml) from its working directory.
REPO_ROOT = Path(__file__).resolve().parents[2]


def _dg(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "dg"), *args], cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _finish(process: subprocess.Popen) -> str:
    """stdout of a finished dg command; its stderr in the failure message when it exits non-zero."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, f"{process.args}: exit {process.returncode}\n{err[-2000:]}"
    return out


@pytest.fixture
def dg_env(sqlite_url, postgres_instance, monkeypatch):
    """What a user sets for `dg`, as for `dagster asset materialize`: DAGSTER_HOME (here a dagster.yaml on
    Postgres), the analytics database and the price source."""
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", sqlite_url)
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    db = Database(sqlite_url)
    db.init_schema()
    return db, {**os.environ, "DAGSTER_HOME": postgres_instance.root_directory}


def test_dg_list_and_check_defs(dg_env):
    _, env = dg_env
    # Side by side: each loads the definitions in its own process.
    checking, listing = _dg("check", "defs", env=env), _dg("list", "defs", "--json", env=env)
    defs = load_definitions()
    assert "All definitions loaded successfully." in _finish(checking)
    listed = json.loads(_finish(listing))

    assert {entry["asset_key"] for entry in listed["assets"]} == {
        key.to_user_string() for key in defs.resolve_all_asset_keys()
    }
    assert {entry["key"] for entry in listed["asset_checks"]} == {
        key.to_user_string() for key in defs.resolve_asset_graph().asset_check_keys
    }
    names = {kind: {entry["name"] for entry in listed[kind]} for kind in ("jobs", "schedules", "sensors")}
    assert names == {
        "jobs": {job.name for job in defs.jobs},
        "schedules": {s.name for s in defs.schedules},
        "sensors": {s.name for s in defs.sensors},
    }
    assert {"symbol_layer_job", "portfolio_layer_job"} <= names["jobs"]
    assert "nightly_schedule" in names["schedules"] and "portfolio_sensor" in names["sensors"]


def test_dg_launch_one_partition_and_a_rectangle(dg_env, postgres_instance):
    """Symbols are dynamic partitions: a key exists once the platform registered the symbol (here directly)."""
    db, env = dg_env
    postgres_instance.add_dynamic_partitions("symbol", ["AAA", "SPY", "BBB"])

    # Side by side, on disjoint symbols. The range is the rectangle between its two keys: every session of
    # [start, end] x the symbols AAA..SPY in registration order, so BBB (registered after SPY) is outside it.
    one = _dg("launch", "--assets", "prices", "--partition", f"{TEST_END}|BBB", env=env)
    ranged = _dg(
        "launch",
        "--assets",
        "prices,symbol_factor_exposures,symbol_metrics",
        "--partition-range",
        f"{TEST_START}|AAA...{TEST_END}|SPY",
        env=env,
    )
    _finish(one)
    _finish(ranged)

    assert len(db.read("prices", {"symbol": "BBB", "date": TEST_END})) == 1
    assert f"{TEST_END}|BBB" in postgres_instance.get_materialized_partitions(dg.AssetKey("prices"))

    rectangle = len(sessions.sessions_in_range(TEST_START, TEST_END)) * 2
    days = {"date": (TEST_START, TEST_END)}
    assert len(db.read("prices", {**days, "symbol": ["AAA", "SPY"]})) == rectangle
    assert len(db.read("symbol_metrics", days)) == rectangle
    # market_beta regresses on SPY, whose prices the same run fetched first (SPY on itself: beta 1).
    assert len(db.read("symbol_factor_exposures", {**days, "factor": "market_beta"})) == rectangle
    done = postgres_instance.get_materialized_partitions(dg.AssetKey("symbol_metrics"))
    assert {key.rsplit("|", 1)[1] for key in done} == {"AAA", "SPY"} and len(done) == rectangle
