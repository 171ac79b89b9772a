"""The guarantee: after source changes (split, dividend, restatement, failover) and incremental runs,
every analytics table equals a fresh build on the final data, and P&L equals the true economics.

A generated market (factor_platform_tests/vendor.py) is exported as a vendor would re-export it
each evening. Night 1 builds through X1; night 2 the vendor has re-based AAA's history for a 4:1
split, paid a BBB dividend (re-basing adj_close), corrected a CCC close already materialized, and
stopped sending DDD (the backup source has it). Night 2 runs through the CLI, or through the nightly
schedule and the portfolio sensor; a fresh build on night 2's files is the reference.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from factor_platform.app.cli import main
from factor_platform.defs.portfolios.sensors import portfolio_sensor
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.defs.schedules import nightly_schedule
from factor_platform.domain import sessions
from factor_platform.running.runs import QUIET_RUN_CONFIG, load_definitions
from factor_platform.storage import Database
from factor_platform_tests.defs.conftest import DIALECTS, TEST_END, _postgres_instance, csv_paths, db_url, fingerprint
from factor_platform_tests.reliability.support import compare, dump
from factor_platform_tests.vendor import Market

X2 = TEST_END
X1 = sessions.sessions_before(X2, 8)
T0 = sessions.sessions_before(X1, 15)  # the book's inception and night 1's first session
DAY = {
    name: pd.Timestamp(sessions.sessions_before(X2, k)) for name, k in (("restated", 10), ("split", 5), ("dividend", 3))
}  # restated: inside night 2's overlap
STOCKS = ("AAA", "BBB", "CCC", "DDD")
BOOK = [("AAA", 100, 1), ("BBB", 50, 1), ("CCC", 30, -1), ("DDD", 10, 1)]
EQUITY = 100_000.0
# Bookkeeping of how the data came to be (differs by history, not by data): not part of the guarantee.
BOOKKEEPING = {"symbol_failures", "stale_partitions", "price_rebasings"}
NEW_YORK = ZoneInfo("America/New_York")


def _market() -> Market:
    market = Market.generate(dt.date(2023, 9, 1), X2, STOCKS)
    market.splits[("AAA", DAY["split"])] = 4.0
    market.dividend_yields[("BBB", DAY["dividend"])] = 0.02
    market.restated[("CCC", DAY["restated"])] = 1.03
    return market


def _book(market: Market, path: Path) -> list[dict]:
    traded = market.traded()  # the book's entry prices are the prices as traded on its entry day
    book = [
        dict(symbol=s, quantity=q, sign=sign, entry_date=T0, entry_price=float(traded.loc[pd.Timestamp(T0), s]))
        for s, q, sign in BOOK
    ]
    lines = ["symbol,quantity,position_type,investment_class,entry_price,entry_date"]
    lines += [
        f"{p['symbol']},{p['quantity']},{'LONG' if p['sign'] > 0 else 'SHORT'},PUBLIC,{p['entry_price']!r},{T0}"
        for p in book
    ]
    path.write_text("\n".join(lines) + "\n")
    return book


def _nights(market, folder: Path, *, adj_close: bool) -> dict:
    """Paths of night 1's and night 2's exports (primary and backup source)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "night1": lambda: (
            market.export(X1, folder / "vendor.csv", adj_close=adj_close, restate=False),
            market.export(X1, folder / "backup.csv", adj_close=adj_close, restate=False),
        ),
        "night2": lambda: (
            market.export(X2, folder / "vendor.csv", adj_close=adj_close, drop=("DDD",)),
            market.export(X2, folder / "backup.csv", adj_close=adj_close),
        ),
        "source": _source(folder),
    }


def _source(folder: Path) -> str:
    """The primary and the backup export in `folder`, in failover order."""
    return f"csv:{folder / 'vendor.csv'},csv:{folder / 'backup.csv'}"


def _setup(monkeypatch, db: Database, home: str, files: dict, book_csv: Path) -> None:
    """The environment of a scenario (its database, Dagster home, source) and its book imported."""
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", db_url(db))
    monkeypatch.setenv("DAGSTER_HOME", home)
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", files["source"])
    assert main(["portfolio", "import", str(book_csv), "--portfolio", "book", "--equity", str(EQUITY)]) == 0


# Fresh builds already made, by what they were built from (fresh_build): a reference is only read.
_FRESH: dict[str, Mapping[str, tuple]] = {}


def fresh_build(
    tmp_path, monkeypatch, template, source: str, book_csv: Path, start: dt.date, end: dt.date
) -> Mapping[str, tuple]:
    """The final files (`source`, the book) built from nothing in one materialize over [start, end],
    into an empty SQLite file: the tables of `_compared_tables`. Made once per session for the same
    files and range, so the scenarios that end on the same data (on SQLite and on Postgres) share it."""
    key = fingerprint(*csv_paths(source), book_csv, extra=(start, end))
    if key not in _FRESH:
        db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
        db.init_schema()
        with _postgres_instance(tmp_path / "fresh_home", template, monkeypatch) as instance:
            _setup(monkeypatch, db, instance.root_directory, {"source": source}, book_csv)
            assert main(["materialize", "--start", str(start), "--end", str(end)]) == 0
        _FRESH[key] = MappingProxyType(
            {name: tuple(rows) for name, rows in dump(db_url(db), _compared_tables()).items()}
        )
        db.dispose()
    return _FRESH[key]


def _compared_tables() -> list[str]:
    from factor_platform.storage import schema

    return [t for t in schema.DATA_TABLES if t not in BOOKKEEPING]


def _without_provenance(tables: dict) -> dict:
    """`prices.source` says who supplied a row when it was fetched: a symbol failed over tonight keeps the
    rows its first source supplied on earlier nights (the same values), where a fresh build has them all
    from the backup. The values are the guarantee; the provenance is history."""
    at = [c.name for c in _prices_columns()].index("source")
    return {**tables, "prices": [row[:at] + (None,) + row[at + 1 :] for row in tables["prices"]]}


def _prices_columns():
    from factor_platform.storage import schema

    return schema.DATA_TABLES["prices"].columns


def _assert_same_as_fresh(db: Database, reference: dict) -> None:
    assert db.count("stale_partitions") == 0, db.read("stale_partitions")
    diffs = compare(_without_provenance(reference), _without_provenance(dump(db_url(db), _compared_tables())))
    bad = [d for d in diffs if not d.ok]
    assert not bad, "\n".join(
        f"{d.table}: lost {d.lost}, extra {d.extra}, changed {d.changed}: {d.examples[:3]}" for d in bad
    )
    assert sum(d.rows for d in diffs) > 5_000


def _assert_true_economics(db: Database, market: Market, book: list[dict], *, adj_close: bool = False) -> None:
    snaps = db.read("portfolio_snapshots", {"portfolio_id": "book"}).set_index("date")
    truth = market.true_equity(book, EQUITY, pd.DatetimeIndex(snaps.index))
    np.testing.assert_allclose(snaps["equity"].to_numpy(), truth.to_numpy(), rtol=1e-9)
    assert snaps.loc[DAY["split"], "daily_return"] == pytest.approx(
        (truth[DAY["split"]] / truth.shift(1)[DAY["split"]]) - 1, rel=1e-6
    )
    assert abs(snaps.loc[DAY["split"], "daily_return"]) < 0.1  # no fake -75 % day
    metrics = db.read("symbol_metrics", {"symbol": ["AAA", "BBB"]}).set_index(["symbol", "date"])
    for symbol, day in (("AAA", DAY["split"]), ("BBB", DAY["dividend"])):  # total returns, never a basis break
        expected = market.returns.loc[day, symbol]
        if adj_close and symbol == "BBB":  # the vendor's adj_close: Yahoo's factor 1 - D / close_prev
            y = market.dividend_yields[(symbol, day)]
            expected = (1 + expected - y) / (1 - y) - 1
        assert metrics.loc[(symbol, day), "return_1d"] == pytest.approx(expected, abs=1e-9)
    actions = db.read("corporate_actions")
    assert set(zip(actions["symbol"], actions["kind"])) == {("AAA", "split"), ("BBB", "dividend")}


def _night_one(copy_of_build, dialect: str, tmp_path: Path, monkeypatch, *, adj_close: bool):
    """Night 1 built through the CLI, then night 2's files published: (db, instance, market, book, book CSV).
    What night 1 leaves is built once per module and dialect for the same files (`copy_of_build`); this
    test goes on from its own copy of it."""
    market = _market()
    book_csv = tmp_path / "book.csv"
    book = _book(market, book_csv)
    files = _nights(market, tmp_path / "vendor", adj_close=adj_close)
    files["night1"]()

    def night_one(db, instance, env, _folder):
        _setup(env, db, instance.root_directory, files, book_csv)
        assert main(["materialize", "--start", str(T0), "--end", str(X1)]) == 0

    key = "night one " + fingerprint(*csv_paths(files["source"]), book_csv, extra=(T0, X1))
    db, instance = copy_of_build(key, dialect, night_one)
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", files["source"])
    files["night2"]()
    return db, instance, market, book, book_csv


@pytest.mark.slow
@pytest.mark.parametrize("adj_close", [False, True], ids=["close_only", "with_adj_close"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_nightly_cli_runs_through_source_changes_equal_a_fresh_build(
    dialect, adj_close, copy_of_build, tmp_path, monkeypatch, _dagster_template
):
    if adj_close and dialect != "sqlite":
        pytest.skip("the adj_close variant runs on SQLite; Postgres runs the close-only one")
    analytics, _, market, book, book_csv = _night_one(
        copy_of_build, dialect, tmp_path, monkeypatch, adj_close=adj_close
    )
    assert main(["materialize", "--start", str(sessions.sessions_before(X2, 7)), "--end", str(X2)]) == 0

    rebased = analytics.read("price_rebasings")
    assert rebased.loc[rebased["symbol"] == "AAA", "close_factor"].tolist() == [pytest.approx(0.25)]
    assert analytics.read("prices", {"symbol": "DDD", "date": X2})["source"].tolist() == ["csv:backup.csv"]
    _assert_true_economics(analytics, market, book, adj_close=adj_close)
    _assert_same_as_fresh(
        analytics, fresh_build(tmp_path, monkeypatch, _dagster_template, _source(tmp_path / "vendor"), book_csv, T0, X2)
    )


def _execute(instance, request, job_name: str | None = None) -> None:
    job = load_definitions().resolve_job_def(request.job_name or job_name)
    if request.asset_selection:
        job = job.get_subset(asset_selection=set(request.asset_selection), asset_check_selection=set())
    result = job.execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=instance,
        raise_on_error=False,
        tags={**request.tags, "dagster/run_key": request.run_key},
    )
    assert result.success, request.run_key


@pytest.mark.slow
@pytest.mark.parametrize("dialect", DIALECTS)
def test_night_two_through_the_schedule_and_the_sensor_equals_a_fresh_build(
    dialect, copy_of_build, tmp_path, monkeypatch, _dagster_template
):
    db, instance, market, book, book_csv = _night_one(copy_of_build, dialect, tmp_path, monkeypatch, adj_close=False)

    when = dt.datetime(X2.year, X2.month, X2.day, 18, 0, tzinfo=NEW_YORK)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, resources={"analytics_db": AnalyticsDatabase(url=db_url(db))}
    ) as context:
        (nightly,) = nightly_schedule.evaluate_tick(context).run_requests
    _execute(instance, nightly, nightly_schedule.job_name)
    assert db.count("stale_partitions") > 0  # the night's prices run found data changed under computed figures
    cursor, requested = None, set()
    for _ in range(6):  # sensor ticks until it asks for nothing new
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"analytics_db": AnalyticsDatabase(url=db_url(db))}
        )
        result = portfolio_sensor.evaluate_tick(context)
        cursor = result.cursor
        fresh = [r for r in result.run_requests if r.run_key not in requested]
        if not fresh:
            break
        for request in fresh:
            requested.add(request.run_key)
            _execute(instance, request)
    assert any(key.startswith("stale:symbol_factor_exposures:") for key in requested)
    assert any(key.startswith("portfolio:book:") for key in requested)
    _assert_true_economics(db, market, book)
    _assert_same_as_fresh(
        db, fresh_build(tmp_path, monkeypatch, _dagster_template, _source(tmp_path / "vendor"), book_csv, T0, X2)
    )
