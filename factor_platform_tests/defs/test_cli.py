"""Both command lines, as a user runs them: `factor-platform` and Dagster's own `dagster asset materialize`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from factor_platform.app.cli import build_parser, main
from factor_platform_tests.defs.conftest import TEST_END, TEST_START

VENV_BIN = Path(sys.executable).parent
GOOD = "symbol,quantity,position_type,investment_class,entry_price,entry_date\nAAA,10,LONG,PUBLIC,50,{day}\nBBB,5,SHORT,PUBLIC,20,{day}\n"


@pytest.fixture
def cli_env(analytics, postgres_instance, monkeypatch):
    """The CLI pointed at the test's analytics database and a Postgres-backed DAGSTER_HOME."""
    home = Path(postgres_instance.root_directory)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return analytics, home


def test_every_command_has_help_with_an_example(capsys):
    for argv in (
        ["--help"],
        ["init", "--help"],
        ["portfolio", "import", "--help"],
        ["materialize", "--help"],
        ["status", "--help"],
        ["demo", "--help"],
        ["ui", "--help"],
        ["report", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        assert "example" in capsys.readouterr().out


def test_ui_binds_loopback_by_default():
    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"


def test_import_validates_every_row_first_and_writes_nothing_on_error(analytics, tmp_path, capsys):
    db = analytics
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD.format(day=TEST_START) + "CCC,-3,LONG,PUBLIC,10,2025-01-02\nDDD,1,LONG,PUBLIC,10,01/02/2024\n")
    assert main(["portfolio", "import", str(bad), "--portfolio", "p1"]) == 2
    err = capsys.readouterr().err
    assert "row 4, field quantity" in err and "row 5, field entry_date" in err
    assert db.count("portfolios") == 0 and db.count("positions") == 0

    good = tmp_path / "good.csv"
    good.write_text(GOOD.format(day=TEST_START))
    assert main(["portfolio", "import", str(good), "--portfolio", "p1", "--equity", "250000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "created"
    before = db.read("positions")
    assert main(["portfolio", "import", str(good), "--portfolio", "p1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "unchanged"
    assert db.read("positions").equals(before)
    good.write_text(GOOD.format(day=TEST_START).replace("BBB,5,SHORT", "BBB,7,SHORT"))
    assert main(["portfolio", "import", str(good), "--portfolio", "p1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "updated"
    assert sorted(db.read("positions")["quantity"]) == [7.0, 10.0]
    assert db.read("portfolios")["starting_equity"].iloc[0] == 250_000


@pytest.mark.slow
def test_materialize_exit_codes_and_status(cli_env, capsys):
    db, _ = cli_env
    assert main(["materialize", "--start", str(TEST_END), "--end", str(TEST_START)]) == 2
    assert "after --end" in capsys.readouterr().err
    assert main(["materialize", "--start", str(TEST_END), "--end", str(TEST_END), "--symbol", "AAA"]) == 0
    assert main(["materialize", "--start", str(TEST_END), "--end", str(TEST_END), "--symbol", "FAILCO"]) == 1
    assert "FAILED FAILCO prices" in capsys.readouterr().err
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    layers = {layer["table"]: layer for layer in status["layers"]}
    assert layers["prices"]["latest_date"] == str(TEST_END)
    assert any(f["symbol"] == "FAILCO" and f["stage"] == "prices" for f in status["failures"])


@pytest.mark.slow
def test_dagster_asset_materialize_cli(sqlite_url, postgres_instance, monkeypatch):
    """`dagster asset materialize` with a single partition and with a range, as documented in the README."""
    from factor_platform.running.execution import materialize
    from factor_platform.storage import Database

    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", sqlite_url)
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    db = Database(sqlite_url)
    db.init_schema()
    materialize(db, start=TEST_END, end=TEST_END, symbols=["AAA"], instance=postgres_instance)
    postgres_instance.add_dynamic_partitions("symbol", ["BBB"])
    env = {**os.environ, "DAGSTER_HOME": postgres_instance.root_directory}
    base = [str(VENV_BIN / "dagster"), "asset", "materialize", "-m", "factor_platform.definitions"]
    for args in (
        ["--select", "prices", "--partition", f"{TEST_START}|BBB"],
        ["--select", "symbol_factor_exposures", "--partition-range", f"{TEST_START}|AAA...{TEST_END}|AAA"],
    ):
        done = subprocess.run(base + args, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert f"{TEST_START}|BBB" in postgres_instance.get_materialized_partitions(dg.AssetKey("prices"))
    assert len(db.read("prices", {"symbol": "BBB", "date": TEST_START})) == 1
    done = postgres_instance.get_materialized_partitions(dg.AssetKey("symbol_factor_exposures"))
    assert {k for k in done if k.endswith("|AAA")} >= {f"{TEST_START}|AAA", f"{TEST_END}|AAA"}
    assert len(db.read("symbol_factor_exposures", {"symbol": "AAA", "date": TEST_START})) == 12
