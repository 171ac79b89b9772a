"""The row-by-row comparison the scenario tests rely on: it must see a lost, an extra and a changed row."""

from __future__ import annotations

import pytest

from factor_platform_tests.reliability.support import Ledger, assert_same_tables, compare

REFERENCE = {
    "prices": [
        ("AAPL", "2024-01-02", 1.0, 2.0, 0.5, 1.5, 1.5, 100, "sample"),
        ("AAPL", "2024-01-03", 1.5, 2.5, 1.0, 2.0, 2.0, 200, "sample"),
    ],
    "portfolio_snapshots": [("p", "2024-01-02", 1e6, 9e5, 1e5, 0.0, 1e5, 1e5, 0.0, 0.0, 0.0, 1, True)],
}


def _copy(tables):
    return {name: list(rows) for name, rows in tables.items()}


def test_identical_tables_compare_equal_within_rounding():
    actual = _copy(REFERENCE)
    row = list(actual["prices"][0])
    row[5] = 1.5 * (1 + 1e-13)  # last-bits difference of a differently summed window
    actual["prices"][0] = tuple(row)
    assert all(d.ok for d in compare(REFERENCE, actual, ledger=Ledger()))


@pytest.mark.parametrize("damage", ["lost", "extra", "changed", "flag"])
def test_damage_is_found(damage):
    actual = _copy(REFERENCE)
    if damage == "lost":
        actual["prices"].pop()
    elif damage == "extra":
        actual["prices"].append(("AAPL", "2024-01-04", 1.0, 1.0, 1.0, 1.0, 1.0, 1, "sample"))
    elif damage == "changed":
        row = list(actual["prices"][1])
        row[5] = 2.0001
        actual["prices"][1] = tuple(row)
    else:
        row = list(actual["portfolio_snapshots"][0])
        row[-1] = False
        actual["portfolio_snapshots"][0] = tuple(row)
    ledger = Ledger()
    diffs = {d.table: d for d in compare(REFERENCE, actual, ledger=ledger)}
    table = "portfolio_snapshots" if damage == "flag" else "prices"
    found = {
        "lost": diffs[table].lost,
        "extra": diffs[table].extra,
        "changed": diffs[table].changed,
        "flag": diffs[table].changed,
    }
    assert found[damage] == 1 and not diffs[table].ok
    assert ledger.rows_lost + ledger.rows_extra + ledger.rows_changed == 1
    with pytest.raises(AssertionError, match=table):
        assert_same_tables(REFERENCE, actual, "damaged", ledger=Ledger())  # not the session's ledger


def test_an_empty_reference_is_refused():
    with pytest.raises(AssertionError, match="left tables empty"):
        assert_same_tables({"prices": []}, {"prices": []}, "empty", ledger=Ledger())
