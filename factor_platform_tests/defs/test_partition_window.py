"""The partition window (FACTOR_PLATFORM_PARTITION_MONTHS, docs/scale.md): sessions before it are
history, computed by the same layer code and recorded as spans, not as Dagster partitions.

Each materialize runs as a user runs it, through the CLI in its own process (the window is part of
the definitions, fixed when they load). A build with a window must give the figures of a build
without one, to the last digit; Dagster must hold only the window's partitions; a second materialize
must find nothing to do; and a store built without a window, once the window is set, is archived:
its older partitions become the same spans, and nothing is computed again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from factor_platform.domain import sessions
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.books import import_portfolio
from factor_platform.layers.history import read_spans
from factor_platform.layers.names import PORTFOLIO_ASSETS, SYMBOL_DAY_ASSETS
from factor_platform_tests.defs.conftest import _postgres_instance, db_url, own_database

VENV_BIN = Path(sys.executable).parent
LATEST = sessions.latest_closed_session()
START = dt.date(2010, 1, 4)
# The smallest window that holds a session up to LATEST (1 month, or 2 on a month's first sessions).
MONTHS = next(m for m in (1, 2, 3) if sessions.partitions_from(START, m) <= LATEST)
WINDOW_FROM = sessions.partitions_from(START, MONTHS)
INCEPTION = sessions.sessions_before(WINDOW_FROM, 8)
HISTORY_LAST = sessions.sessions_before(WINDOW_FROM, 1)
BOOK = "symbol,quantity,position_type,investment_class,entry_price,entry_date\n" + "".join(
    f"{s},{q},LONG,PUBLIC,50,{INCEPTION}\n" for s, q in (("AAA", 100), ("BBB", 40))
)
TABLES = SYMBOL_DAY_ASSETS + PORTFOLIO_ASSETS


def _materialize(*builds: tuple) -> list[dict]:
    """`factor-platform materialize --json` for each (db, instance, months) of `builds`, each in its own process,
    side by side (they share nothing); the outcome of each, in order."""
    started = []
    for db, instance, months in builds:
        env = {
            **os.environ,
            "FACTOR_PLATFORM_DB_URL": db_url(db),
            "DAGSTER_HOME": instance.root_directory,
            "FACTOR_PLATFORM_PRICE_SOURCE": "sample",
            "FACTOR_PLATFORM_START_DATE": START.isoformat(),
            "FACTOR_PLATFORM_PARTITION_MONTHS": str(months),
        }
        args = ["materialize", "--json", "--start", str(INCEPTION), "--end", str(LATEST), "--portfolio", "book"]
        started.append(
            subprocess.Popen(
                [str(VENV_BIN / "factor-platform"), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outcomes = []
    for process in started:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
        start = re.search(r"^\{", stdout, re.M)
        outcomes.append(json.JSONDecoder().raw_decode(stdout, start.start())[0])
    return outcomes


def _import(db, tmp_path) -> None:
    path = tmp_path / "book.csv"
    path.write_text(BOOK)
    import_portfolio(db, path, portfolio_id="book")


def _figures(db) -> dict[str, pd.DataFrame]:
    out = {}
    for table in TABLES:
        frame = db.read(table)
        out[table] = frame.drop(columns=[c for c in frame.columns if c.endswith("_at") or c == "source"])
    return out


def _partitions(instance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


@pytest.mark.slow
def test_history_before_the_window_is_spans_and_the_figures_are_a_whole_builds(
    analytics, postgres_instance, _dagster_template, tmp_path, monkeypatch
):
    windowed, instance = analytics, postgres_instance
    symbols = ["AAA", "BBB", *factor_tickers(load_regressions())]
    (tmp_path / "whole").mkdir()  # on SQLite, not the analytics fixture's file (tmp_path/factor_platform.db)
    with (
        own_database(windowed.dialect, tmp_path / "whole") as whole,
        _postgres_instance(tmp_path / "whole_home", _dagster_template, monkeypatch) as whole_instance,
    ):
        for db in (windowed, whole):
            _import(db, tmp_path)
        first, _ = _materialize((windowed, instance, MONTHS), (whole, whole_instance, 0))
        assert not first["failures"], first["failures"]

        # Dagster holds the window's partitions only; the sessions before it are spans, one per key.
        window = [d.date().isoformat() for d in sessions.sessions_in_range(WINDOW_FROM, LATEST)]
        assert _partitions(instance, "prices") == {f"{d}|{s}" for d in window for s in symbols}
        assert _partitions(instance, "portfolio_snapshots") == {f"{d}|book" for d in window}
        for asset in SYMBOL_DAY_ASSETS:
            assert read_spans(windowed, asset, symbols) == {s: [(INCEPTION, HISTORY_LAST)] for s in symbols}, asset
        for asset in PORTFOLIO_ASSETS:
            assert read_spans(windowed, asset, ["book"]) == {"book": [(INCEPTION, HISTORY_LAST)]}, asset
        # A whole build's Dagster has every session since inception.
        assert min(_partitions(whole_instance, "prices")) == f"{INCEPTION}|AAA"

        # The same figures, whichever way the sessions were recorded.
        mine, theirs = _figures(windowed), _figures(whole)
        for table in TABLES:
            assert len(mine[table]) > 0, table
            pd.testing.assert_frame_equal(mine[table], theirs[table], check_exact=False, rtol=1e-12, obj=table)

        # Nothing is left to do; and the whole build, with the window set: its older partitions are archived
        # into the same spans.
        again, archived = _materialize((windowed, instance, MONTHS), (whole, whole_instance, MONTHS))
        assert (again["partitions"], again["runs"]) == (0, 0)
        assert archived["archived_partitions"] > 0 and (archived["partitions"], archived["runs"]) == (0, 0)
        assert _partitions(whole_instance, "prices") == _partitions(instance, "prices")
        for asset in TABLES:
            keys = ["book"] if asset in PORTFOLIO_ASSETS else symbols
            assert read_spans(whole, asset, keys) == read_spans(windowed, asset, keys), asset
        pd.testing.assert_frame_equal(_figures(whole)["portfolio_snapshots"], theirs["portfolio_snapshots"])


def test_the_archive_job_moves_records_that_left_the_window_into_spans(analytics, sqlite_instance, monkeypatch):
    """On Dagster's SQLite storage (the CLI test above runs on Postgres), through the scheduled job."""
    from factor_platform.defs.archive import archive_job
    from factor_platform.defs.resources import AnalyticsDatabase

    db, instance = analytics, sqlite_instance
    instance.add_dynamic_partitions("symbol", ["AAA", "BBB"])
    old = [d.date() for d in sessions.sessions_in_range(INCEPTION, HISTORY_LAST)]
    keys = [f"{d}|AAA" for d in old] + [f"{old[0]}|BBB", f"{old[2]}|BBB", f"{LATEST}|AAA"]
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization("prices", partition=key))
    monkeypatch.setenv("FACTOR_PLATFORM_START_DATE", START.isoformat())
    monkeypatch.setenv("FACTOR_PLATFORM_PARTITION_MONTHS", str(MONTHS))

    def run() -> None:
        job = archive_job.execute_in_process(instance=instance, resources={"analytics_db": AnalyticsDatabase()})
        assert job.success

    run()
    assert _partitions(instance, "prices") == {f"{LATEST}|AAA"}
    assert read_spans(db, "prices") == {
        "AAA": [(INCEPTION, HISTORY_LAST)],
        "BBB": [(old[0], old[0]), (old[2], old[2])],  # a session between them was never computed
    }
    run()  # nothing left before the window: nothing changes
    assert read_spans(db, "prices")["BBB"] == [(old[0], old[0]), (old[2], old[2])]
