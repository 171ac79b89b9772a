"""symbol_failures bookkeeping: one row per open (symbol, stage), attempts, skip, clear."""

from __future__ import annotations

import pandas as pd
import pytest

D1, D2 = pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")


def failures(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "stage", "date", "error"])


def by_key(database) -> dict:
    frame = database.read("symbol_failures")
    return {(r.symbol, r.stage): r for r in frame.itertuples(index=False)}


def test_record_failures_counts_attempts_and_keeps_first_seen(database):
    database.record_failures(failures([("AAA", "prices", D1, "no data"), ("BBB", "factor:market_beta", D1, "few")]))
    first = by_key(database)
    assert first["AAA", "prices"].attempts == 1
    assert first["AAA", "prices"].status == "open"
    assert first["AAA", "prices"].first_seen == first["AAA", "prices"].last_seen

    database.record_failures(failures([("AAA", "prices", D2, "rate limited")]))
    second = by_key(database)
    aaa = second["AAA", "prices"]
    assert aaa.attempts == 2
    assert aaa.first_seen == first["AAA", "prices"].first_seen
    assert aaa.last_seen > first["AAA", "prices"].last_seen
    assert (aaa.date, aaa.error) == (D2, "rate limited")
    assert second["BBB", "factor:market_beta"].attempts == 1

    database.record_failures(failures([("AAA", "prices", D1, "backfill failed")]))  # an older date
    aaa = by_key(database)["AAA", "prices"]
    assert (aaa.attempts, aaa.date, aaa.error) == (3, D2, "backfill failed")  # date = latest failed


def test_clear_failures_deletes_only_those_open_pairs(database):
    database.record_failures(
        failures(
            [
                ("AAA", "prices", D1, "x"),
                ("AAA", "metrics", D1, "x"),
                ("BBB", "prices", D1, "x"),
                ("CCC", "prices", D1, "x"),
            ]
        )
    )
    database.mark_skipped(["CCC"], "prices")
    successes = pd.DataFrame({"symbol": ["AAA", "CCC", "ZZZ"], "stage": "prices", "extra": 1})
    assert database.clear_failures(successes) == 1
    assert set(by_key(database)) == {("AAA", "metrics"), ("BBB", "prices"), ("CCC", "prices")}
    assert database.clear_failures(successes, statuses=("open", "skipped")) == 1
    assert set(by_key(database)) == {("AAA", "metrics"), ("BBB", "prices")}
    assert database.clear_failures(pd.DataFrame(columns=["symbol", "stage"])) == 0


def test_mark_skipped_keeps_status_through_later_failures(database):
    database.record_failures(failures([("OLD", "prices", D1, "delisted?")]))
    assert database.mark_skipped(["OLD", "NEW"], "prices") == 2
    rows = by_key(database)
    assert rows["OLD", "prices"].status == "skipped" and rows["OLD", "prices"].attempts == 1
    assert rows["OLD", "prices"].error == "delisted?"
    assert rows["NEW", "prices"].status == "skipped" and rows["NEW", "prices"].attempts == 0
    database.record_failures(failures([("OLD", "prices", D2, "still nothing")]))
    old = by_key(database)["OLD", "prices"]
    assert (old.status, old.attempts, old.error) == ("skipped", 2, "still nothing")
    # status can be set explicitly through the frame
    database.record_failures(failures([("OLD", "prices", D2, "back")]).assign(status="open"))
    assert by_key(database)["OLD", "prices"].status == "open"


def test_record_failures_validation(database):
    with pytest.raises(ValueError, match="unknown column"):
        database.record_failures(failures([("A", "prices", D1, "x")]).assign(attempts=5))
    with pytest.raises(ValueError, match="status"):
        database.record_failures(failures([("A", "prices", D1, "x")]).assign(status="gone"))
    with pytest.raises(ValueError, match="share a key"):
        database.record_failures(failures([("A", "prices", D1, "x"), ("A", "prices", D2, "y")]))
    with pytest.raises(ValueError, match="missing required column"):
        database.record_failures(pd.DataFrame({"symbol": ["A"], "error": ["x"]}))
    assert database.read("symbol_failures").empty
    assert database.record_failures(failures([])) == 0
