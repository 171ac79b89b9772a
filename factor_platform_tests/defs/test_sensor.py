"""The portfolio sensor's parts, and its ticks through Dagster's `build_sensor_context` + `evaluate_tick`.

The parts are plain functions of books and dates (no instance needed); the ticks run on Dagster's
SQLite instance and the analytics database (SQLite and Postgres), without executing any run.
test_onboarding.py executes the runs the sensor requests and checks Dagster's bookkeeping.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from factor_platform.defs.portfolios.sensors import portfolio_sensor
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.domain.book import Book
from factor_platform.layers.books import import_portfolio, read_book
from factor_platform.layers.names import HISTORY_JOB
from factor_platform.planning.plan import HISTORY_TAG
from factor_platform.planning.portfolio_runs import Window, catch_up_run, onboard
from factor_platform.planning.state import all_etfs
from factor_platform_tests.defs.conftest import db_url

LATEST = dt.date(2025, 6, 30)
INCEPTION = dt.date(2025, 6, 2)
START = "dagster/asset_partition_range_start"
END = "dagster/asset_partition_range_end"
WINDOW = Window(dt.date(2010, 1, 4), dt.date(2010, 1, 4))  # no partition window: every session is a partition


def book(pid: str, symbols: list[str], *, version: int | None = 1, created_at: str = "2025-06-01 12:00:00") -> Book:
    positions = pd.DataFrame(
        {
            "position_id": [f"{pid}:{i + 1}" for i in range(len(symbols))],
            "symbol": symbols,
            "quantity": 10.0,
            "position_type": "LONG",
            "investment_class": "PUBLIC",
            "entry_price": 50.0,
            "entry_date": pd.Timestamp(INCEPTION),
        }
    )
    row = {
        "portfolio_id": pid,
        "inception_date": INCEPTION,
        "starting_equity": 1e6,
        "book_version": version,
        "created_at": pd.Timestamp(created_at),
    }
    return Book.from_rows(row, positions)


def catch_up(
    *,
    symbols_through=LATEST,
    snapshots_through=None,
    stale_from=None,
    stale_stamp=None,
    window=WINDOW,
    version: int | None = 1,
):
    """`catch_up_run` of portfolio p (AAA, inception INCEPTION) as of LATEST."""
    return catch_up_run(
        book("p", ["AAA"], version=version),
        latest=LATEST,
        symbols_through=symbols_through,
        snapshots_through=snapshots_through,
        stale_from=stale_from,
        stale_stamp=stale_stamp,
        window=window,
    )


# ----------------------------------------------------------------------------------------- onboarding
def test_onboarding_computes_each_new_symbol_once_and_the_second_portfolio_waits():
    new = onboard(
        [book("a", ["AAA", "BBB"]), book("b", ["BBB", "CCC"]), book("old", ["ZZZ"])],
        known_portfolios={"old"},
        known_symbols={"BBB"} | set(all_etfs()),
        etfs=all_etfs(),
        latest=LATEST,
        window=WINDOW,
    )
    assert new.portfolios == ["a", "b"] and new.symbols == ["AAA", "CCC"]
    symbol_runs = [r for r in new.runs if r.job_name == "symbol_layer_job"]
    assert [(r.tags[START], r.tags[END]) for r in symbol_runs] == [
        (f"{INCEPTION}|AAA", f"{LATEST}|AAA"),
        (f"{INCEPTION}|CCC", f"{LATEST}|CCC"),
    ]
    assert new.waiting == {"a": [symbol_runs[0].run_key], "b": [symbol_runs[1].run_key]}
    assert [r.job_name for r in new.runs].count("reference_data_job") == 2


def test_a_symbol_claimed_by_the_first_new_portfolio_makes_the_second_wait_for_its_run():
    new = onboard(
        [book("a", ["NEW"]), book("b", ["NEW"])],
        known_portfolios=set(),
        known_symbols=set(all_etfs()),
        etfs=all_etfs(),
        latest=LATEST,
        window=WINDOW,
    )
    first_key = new.runs[0].run_key
    assert new.symbols == ["NEW"] and len(new.runs) == 2  # b starts no run of its own
    assert new.waiting == {"a": [first_key], "b": [first_key]}


def test_onboarding_starts_no_run_when_every_symbol_is_known():
    new = onboard(
        [book("a", ["AAA"])],
        known_portfolios=set(),
        known_symbols={"AAA"} | set(all_etfs()),
        etfs=all_etfs(),
        latest=LATEST,
        window=WINDOW,
    )
    assert new.runs == [] and new.portfolios == ["a"] and new.waiting == {"a": []}


def test_onboarding_and_catch_up_before_the_partition_window_are_history_runs():
    window = Window(dt.date(2010, 1, 4), dt.date(2025, 6, 16))  # inception 2025-06-02 lies before it
    new = onboard([book("a", ["NEW"])], set(), set(all_etfs()), etfs=all_etfs(), latest=LATEST, window=window)
    symbols, reference = new.runs
    assert symbols.job_name == HISTORY_JOB and symbols.run.assets == (
        "prices",
        "symbol_factor_exposures",
        "symbol_metrics",
    )
    assert (symbols.run.rectangle.first, symbols.run.rectangle.last) == (INCEPTION, LATEST)
    assert symbols.tags[HISTORY_TAG] == f"{INCEPTION}..{LATEST} x NEW" and START not in symbols.tags
    assert reference.job_name == "reference_data_job"  # symbols only: no window there
    late = catch_up(snapshots_through=dt.date(2025, 6, 20), window=window)
    assert late.job_name == "portfolio_layer_job" and late.tags[START] == "2025-06-23|p"  # inside the window
    first = catch_up(window=window)
    assert first.job_name == HISTORY_JOB and first.run.rectangle.keys == ("p",)


# ----------------------------------------------------------------------------------------- catch-up
def test_catch_up_runs_from_inception_to_the_latest_priced_session():
    request = catch_up(symbols_through=dt.date(2025, 6, 27))
    assert (request.tags[START], request.tags[END]) == (f"{INCEPTION}|p", "2025-06-27|p")
    assert request.run_key == f"portfolio:p:{INCEPTION}:2025-06-27:v1"


def test_catch_up_starts_after_the_latest_snapshot_and_stops_when_current():
    after = catch_up(snapshots_through=dt.date(2025, 6, 26))
    assert after.tags[START] == "2025-06-27|p"  # Friday after Thursday
    assert catch_up(snapshots_through=LATEST) is None


def test_stale_figures_move_the_start_back_and_mark_the_run_key():
    request = catch_up(snapshots_through=LATEST, stale_from=dt.date(2025, 6, 10), stale_stamp="20250701T080000000000")
    assert (request.tags[START], request.tags[END]) == ("2025-06-10|p", f"{LATEST}|p")
    assert request.run_key.endswith(":v1:stale-20250701T080000000000")


def test_the_books_version_makes_a_changed_book_a_new_run():
    keys = {catch_up(version=v).run_key for v in (1, 2, 3, None)}
    assert len(keys) == 4


# ------------------------------------------------------------------------------------ the import's version
def test_every_import_that_changes_the_book_raises_its_version(database, tmp_path):
    header = "symbol,quantity,position_type,investment_class,entry_price,entry_date\n"
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text(header + "AAA,10,LONG,PUBLIC,50,2025-06-02\n")
    second.write_text(header + "AAA,20,LONG,PUBLIC,50,2025-06-02\n")
    versions = [
        import_portfolio(database, path, portfolio_id="p")["book_version"] for path in (first, first, second, first)
    ]
    assert versions == [1, 1, 2, 3]  # back to the first file is a third book, not the first again
    stored = read_book(database, "p")
    assert stored.version == 3 and stored.held_symbols == ["AAA"] and stored.inception == INCEPTION


# ------------------------------------------------------------------------------------------- ticks
def _tick(instance, db, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"analytics_db": AnalyticsDatabase(url=db_url(db))}
    )
    return portfolio_sensor.evaluate_tick(context)


def test_a_tick_onboards_an_imported_portfolio_and_registers_its_partitions(database, sqlite_instance, tmp_path):
    path = tmp_path / "p.csv"
    entry = sessions.sessions_before(sessions.latest_closed_session(), 3)
    path.write_text(
        f"symbol,quantity,position_type,investment_class,entry_price,entry_date\nAAA,10,LONG,PUBLIC,50,{entry}\n"
    )
    import_portfolio(database, path, portfolio_id="p")
    tick = _tick(sqlite_instance, database)
    assert sorted(r.job_name for r in tick.run_requests) == ["reference_data_job", "symbol_layer_job"]
    added = {r.partitions_def_name: list(r.partition_keys) for r in tick.dynamic_partitions_requests}
    assert added == {"portfolio": ["p"], "symbol": ["AAA", *all_etfs()]}
    assert list(json.loads(tick.cursor)["waiting"]) == ["p"]


def test_a_bad_book_written_by_another_application_blocks_no_other_portfolio(database, sqlite_instance, tmp_path):
    path = tmp_path / "good.csv"
    path.write_text(
        "symbol,quantity,position_type,investment_class,entry_price,entry_date\nAAA,10,LONG,PUBLIC,50,2025-06-02\n"
    )
    import_portfolio(database, path, portfolio_id="good")
    with database.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO portfolios (portfolio_id, name, starting_equity, inception_date) "
                "VALUES ('bad', 'bad', 1000, '2025-06-02')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO positions (position_id, portfolio_id, symbol, position_type, investment_class, "
                "quantity, entry_price, entry_date) VALUES ('bad:1', 'bad', 'AAA', 'LONG', 'PUBLIC', -5, 50, '2025-06-02')"
            )
        )
    tick = _tick(sqlite_instance, database)
    added = {r.partitions_def_name: list(r.partition_keys) for r in tick.dynamic_partitions_requests}
    assert added["portfolio"] == ["good"]
    with pytest.raises(ValueError, match="bad:1: quantity must be > 0"):
        read_book(database, "bad")
