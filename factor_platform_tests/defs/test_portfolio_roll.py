"""Through Dagster: the portfolio asset says how many portfolios it rolled from inception (each read its
whole history because no snapshot was stored before the span). The roll itself, on both dialects:
factor_platform_tests/layers/test_portfolio_roll.py."""

from __future__ import annotations

import dagster as dg

from factor_platform.domain import sessions
from factor_platform.layers.books import import_portfolio
from factor_platform.running.execution import materialize
from factor_platform.storage import Database
from factor_platform_tests.defs.conftest import TEST_END, TEST_START, db_url

DAYS = [d.date() for d in sessions.sessions_in_range(TEST_START, TEST_END)]


def _rolled_from_inception(instance, day) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey("portfolio_snapshots"), asset_partitions=[f"{day}|book"]), limit=1
    ).records
    return records[0].asset_materialization.metadata["rolled_from_inception"].value


def test_the_asset_counts_the_portfolios_rolled_from_inception(sqlite_url, postgres_instance, tmp_path, monkeypatch):
    db, instance = Database(sqlite_url), postgres_instance
    db.init_schema()
    monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", db_url(db))
    monkeypatch.setenv("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    csv = tmp_path / "book.csv"
    csv.write_text(
        "symbol,quantity,position_type,investment_class,entry_price,entry_date\n"
        f"AAA,100,LONG,PUBLIC,50,{TEST_START}\nBBB,40,SHORT,PUBLIC,80,{TEST_START}\n"
    )
    import_portfolio(db, csv, portfolio_id="book", equity=100_000)
    assert materialize(db, start=TEST_START, end=DAYS[-3], portfolios=["book"], instance=instance)["failures"] == []
    assert _rolled_from_inception(instance, DAYS[-3]) == 0  # a first build: the span begins at inception

    db.delete("portfolio_snapshots", {"portfolio_id": ["book"], "date": (DAYS[-3], DAYS[-3])})
    outcome = materialize(db, start=DAYS[-2], end=DAYS[-1], portfolios=["book"], instance=instance)
    assert outcome["failures"] == []
    assert _rolled_from_inception(instance, DAYS[-1]) == 1  # no snapshot before the span
    snaps = db.read("portfolio_snapshots", {"portfolio_id": ["book"]})
    assert snaps["date"].dt.date.tolist() == DAYS[:-3] + DAYS[-2:]
    db.dispose()
