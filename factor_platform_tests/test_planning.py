"""Missing partitions -> rectangles: exactly the missing pairs, in few runs."""

import datetime as dt

import pytest

from factor_platform.planning.rectangles import Rectangle, plan_rectangles

DAYS = [dt.date(2025, 1, d) for d in (2, 3, 6, 7, 8, 9, 10)]


def covered(rects, sessions):
    pairs = []
    for r in rects:
        pairs += [(d, k) for d in sessions if r.first <= d <= r.last for k in r.keys]
    return pairs


def test_new_symbols_are_one_rectangle_and_known_ones_none():
    order = ["SPY", "AAPL", "NEW1", "NEW2", "NEW3"]
    missing = {"SPY": set(), "AAPL": set(), "NEW1": set(DAYS), "NEW2": set(DAYS), "NEW3": set(DAYS)}
    rects = plan_rectangles(missing, sessions=DAYS, key_order=order)
    assert rects == [Rectangle(DAYS[0], DAYS[-1], ("NEW1", "NEW2", "NEW3"))]


def test_nightly_increment_is_one_rectangle():
    order = ["A", "B", "C"]
    missing = {k: {DAYS[-1]} for k in order}
    assert plan_rectangles(missing, sessions=DAYS, key_order=order) == [Rectangle(DAYS[-1], DAYS[-1], ("A", "B", "C"))]


def test_holes_and_non_contiguous_keys_are_covered_exactly():
    order = ["A", "B", "C", "D"]
    missing = {
        "A": {DAYS[0], DAYS[1], DAYS[4]},
        "B": set(),
        "C": {DAYS[0], DAYS[1], DAYS[4]},
        "D": {DAYS[0], DAYS[1], DAYS[4]},
    }
    rects = plan_rectangles(missing, sessions=DAYS, key_order=order)
    want = sorted((d, k) for k, days in missing.items() for d in days)
    got = covered(rects, DAYS)
    assert sorted(got) == want and len(got) == len(set(got))  # exactly, and no pair twice
    assert len(rects) == 4  # A: two runs; C..D: two runs


def test_unregistered_key_is_an_error():
    with pytest.raises(ValueError, match="not registered"):
        plan_rectangles({"ZZZ": {DAYS[0]}}, sessions=DAYS, key_order=["A"])


def test_tags_are_dagster_range_tags():
    r = Rectangle(DAYS[0], DAYS[2], ("A", "B"))
    assert r.tags() == {
        "dagster/asset_partition_range_start": "2025-01-02|A",
        "dagster/asset_partition_range_end": "2025-01-06|B",
    }
