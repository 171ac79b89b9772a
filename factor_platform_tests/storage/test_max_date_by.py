"""`Database.max_date_by` per key on both dialects: the Postgres per-key index lookup gives what a
GROUP BY over every row gives (newest and oldest), and leaves out keys without rows."""

from __future__ import annotations

import pandas as pd

DAYS = pd.bdate_range("2025-06-02", periods=5)


def test_newest_and_oldest_per_key_as_a_group_by_gives(database):
    db = database
    rows = pd.DataFrame(
        {
            "symbol": ["AAA"] * 5 + ["BBB"] * 2 + ["CCC"],
            "date": list(DAYS) + [DAYS[1], DAYS[3]] + [DAYS[4]],
            "close": 1.0,
            "adj_close": 1.0,
        }
    )
    db.upsert("prices", rows)
    every = db.max_date_by("prices", "symbol")  # no keys: one GROUP BY on either dialect
    assert every == {"AAA": DAYS[4].date(), "BBB": DAYS[3].date(), "CCC": DAYS[4].date()}
    assert db.max_date_by("prices", "symbol", ["BBB", "AAA", "NONE", "BBB"]) == {
        "AAA": DAYS[4].date(),
        "BBB": DAYS[3].date(),
    }
    assert db.max_date_by("prices", "symbol", ["AAA", "BBB"], oldest=True) == {
        "AAA": DAYS[0].date(),
        "BBB": DAYS[1].date(),
    }
    assert db.max_date_by("prices", "symbol", []) == {}
