"""The counts behind the asset checks, on both dialects: each counts exactly the rows that break its
invariant, and `since` (the partition window) leaves the older rows out."""

from __future__ import annotations

import pandas as pd

from factor_platform.storage import invariants

OLD, MID, NEW = pd.Timestamp("2025-06-02"), pd.Timestamp("2025-06-03"), pd.Timestamp("2025-06-04")


def test_counts_the_rows_that_break_each_invariant_from_since_on(database):
    db = database
    db.upsert(
        "prices",
        pd.DataFrame(
            {
                "symbol": ["AAA", "AAA", "AAA", "BBB"],
                "date": [OLD, MID, NEW, NEW],
                "close": [-1.0, 10.0, 10.0, 5.0],
                "adj_close": [1.0, 0.0, 10.0, 5.0],
            }
        ),
    )
    db.upsert(
        "symbol_factor_exposures",
        pd.DataFrame(
            {
                "symbol": ["AAA", "AAA", "AAA", "AAA"],
                "date": [OLD, MID, NEW, NEW],
                "factor": ["market", "market", "market", "size"],
                "beta": [float("nan"), 1.0, 0.5, float("inf")],
                "r_squared": [0.5, 1.5, 0.2, 0.3],
            }
        ),
    )
    db.upsert(
        "portfolio_snapshots",
        pd.DataFrame({"portfolio_id": ["p", "p", "p"], "date": [OLD, MID, NEW], "is_complete": [False, True, False]}),
    )
    assert [invariants.nonpositive_prices(db, since=s) for s in (None, MID.date(), NEW.date())] == [2, 1, 0]
    assert [invariants.invalid_betas(db, since=s) for s in (None, MID.date(), NEW.date())] == [3, 2, 1]
    assert [invariants.incomplete_snapshots(db, since=s) for s in (None, MID.date(), NEW.date())] == [2, 1, 1]


def test_snapshot_counts_and_newest_date_over_several_portfolios(database):
    """On Postgres these read portfolio_snapshots through its key, portfolio by portfolio (no index on date)."""
    db = database
    assert invariants.newest_snapshot(db) is None
    db.upsert(
        "portfolio_snapshots",
        pd.DataFrame(
            {
                "portfolio_id": ["a", "a", "b", "c", "c"],
                "date": [OLD, NEW, MID, OLD, MID],
                "is_complete": [False, False, False, True, False],
            }
        ),
    )
    assert invariants.newest_snapshot(db) == NEW.date()
    assert sorted(invariants.leading_keys(db, "portfolio_snapshots", "portfolio_id")) == ["a", "b", "c"]
    assert [invariants.incomplete_snapshots(db, since=s) for s in (None, MID.date(), NEW.date())] == [4, 3, 1]
