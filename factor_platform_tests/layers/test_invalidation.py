"""Stale partitions: marked only where figures exist, merged, cleared by the run that recomputes them."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from factor_platform.domain import sessions
from factor_platform.layers.invalidation import Stale, clear_stale, mark_stale, stale_days, stale_summary

DAYS = [d.date() for d in sessions.sessions_in_range(dt.date(2025, 6, 2), dt.date(2025, 6, 13))]


def _metrics(db, symbol, days):
    db.upsert("symbol_metrics", pd.DataFrame({"symbol": symbol, "date": pd.to_datetime(days), "return_1d": 0.01}))


def test_marks_only_computed_figures_and_clamps_to_them(database):
    _metrics(database, "AAA", DAYS[2:])
    with database.begin() as conn:
        counts = mark_stale(
            database,
            conn,
            [
                Stale("symbol_metrics", "AAA", dt.date(1900, 1, 1), "AAA re-based"),  # from the oldest computed row
                Stale("symbol_metrics", "BBB", DAYS[0], "nothing computed yet"),
                Stale("symbol_metrics", "AAA", DAYS[5], "a later change merges into the first"),
            ],
        )
    assert counts == {"symbol_metrics": 1}
    rows = database.read("stale_partitions")
    assert rows[["asset", "key"]].values.tolist() == [["symbol_metrics", "AAA"]]
    assert rows["first_date"].dt.date.tolist() == [DAYS[2]] and rows["last_date"].dt.date.tolist() == [DAYS[-1]]
    assert stale_days(database, "symbol_metrics", ["AAA"], end=DAYS[6], calendar="XNYS") == {"AAA": set(DAYS[2:7])}
    assert stale_summary(database) == {"symbol_metrics": {"keys": 1, "first_date": DAYS[2].isoformat()}}


def test_a_run_clears_what_it_covered_and_keeps_the_rest(database):
    _metrics(database, "AAA", DAYS)
    _metrics(database, "BBB", DAYS)
    with database.begin() as conn:
        mark_stale(
            database, conn, [Stale("symbol_metrics", "AAA", DAYS[3], "x"), Stale("symbol_metrics", "BBB", DAYS[3], "x")]
        )
    with database.begin() as conn:
        assert clear_stale(database, conn, "symbol_metrics", ["AAA", "BBB"], DAYS[3], DAYS[6], calendar="XNYS") == 2
    left = stale_days(database, "symbol_metrics", None, end=DAYS[-1], calendar="XNYS")
    assert left == {"AAA": set(DAYS[7:]), "BBB": set(DAYS[7:])}
    with database.begin() as conn:  # a run starting after the marker's first date leaves it alone
        clear_stale(database, conn, "symbol_metrics", ["AAA"], DAYS[8], DAYS[-1], calendar="XNYS")
    assert stale_days(database, "symbol_metrics", ["AAA"], end=DAYS[-1], calendar="XNYS") == {"AAA": set(DAYS[7:])}
    with database.begin() as conn:
        clear_stale(database, conn, "symbol_metrics", ["AAA", "BBB"], DAYS[7], DAYS[-1], calendar="XNYS")
    assert database.count("stale_partitions") == 0
