"""One transaction per begin(): all or nothing; concurrent overlapping writers don't fail."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

D1 = pd.Timestamp("2024-01-02")


class Boom(Exception):
    pass


def prices(symbols, close=1.0) -> pd.DataFrame:
    return pd.DataFrame({"symbol": list(symbols), "date": D1, "close": close})


def test_a_transaction_that_raises_writes_nothing(database):
    database.upsert("prices", prices(["KEEP"]))
    with pytest.raises(Boom):
        with database.begin() as conn:
            database.upsert("prices", prices(["AAA", "BBB"]), conn=conn)
            database.replace("prices", prices(["KEEP"], close=2.0), {"symbol": "KEEP"}, conn=conn)
            database.record_failures(
                pd.DataFrame({"symbol": ["AAA"], "stage": ["prices"], "date": [D1], "error": ["x"]}), conn=conn
            )
            database.mark_skipped(["ZZZ"], "prices", conn=conn)
            assert len(database.read("prices", conn=conn)) == 3  # visible inside the transaction
            raise Boom
    assert database.read("prices")[["symbol", "close"]].values.tolist() == [["KEEP", 1.0]]
    assert database.read("symbol_failures").empty


def test_a_validation_error_inside_a_transaction_rolls_back_earlier_writes(database):
    with pytest.raises(ValueError):
        with database.begin() as conn:
            database.upsert("prices", prices(["AAA"]), conn=conn)
            database.upsert("prices", prices(["AAA", "AAA"]), conn=conn)  # duplicate key
    assert database.read("prices").empty


def test_begin_commits(database):
    with database.begin() as conn:
        database.upsert("prices", prices(["AAA"]), conn=conn)
        database.upsert(
            "symbol_metrics", pd.DataFrame({"symbol": ["AAA"], "date": [D1], "return_1d": [0.01]}), conn=conn
        )
    assert len(database.read("prices")) == 1 and len(database.read("symbol_metrics")) == 1


def test_overlapping_concurrent_upserts_all_succeed(database):
    """Writers on overlapping keys (in different orders) all succeed: no 'database is locked' on SQLite;
    on Postgres rows are locked in key order and a deadlock victim (possible when two transactions
    create the same new key) is retried."""
    symbols = [f"S{i:03d}" for i in range(200)]
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(3):
                chosen = rng.permutation(symbols)[:150]
                database.upsert("prices", prices(chosen, close=float(seed)))
                database.replace("prices", prices(chosen[:20], close=float(seed)), {"symbol": list(chosen[:20])})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert database.read("prices")["symbol"].is_unique
