"""From missing partitions to few runs: rectangles of contiguous sessions x contiguous keys.

Dagster runs a range of a 2-D partition (tags `dagster/asset_partition_range_start/end`) as one
run over the rectangle between the two keys. This module turns "which (date, key) partitions of
these assets are missing" into such rectangles, so a new symbol's year of history is one run, and
the nightly increment is one run per layer. Pure: no Dagster instance here, just keys and sets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from itertools import groupby

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class Rectangle:
    """Sessions `first`..`last` (contiguous in the session list) x keys `keys` (contiguous in partition order)."""

    first: dt.date
    last: dt.date
    keys: tuple[str, ...]

    def tags(self) -> dict[str, str]:
        return {
            RANGE_START_TAG: f"{self.first.isoformat()}|{self.keys[0]}",
            RANGE_END_TAG: f"{self.last.isoformat()}|{self.keys[-1]}",
        }

    def partition_keys(self, sessions: list[dt.date]) -> list[str]:
        days = [d for d in sessions if self.first <= d <= self.last]
        return [f"{d.isoformat()}|{k}" for d in days for k in self.keys]


def _runs_of_sessions(missing: set[dt.date], sessions: list[dt.date]) -> tuple[tuple[dt.date, dt.date], ...]:
    """Maximal runs of consecutive sessions (in `sessions` order) that are all in `missing`."""
    runs = []
    for is_missing, group in groupby(sessions, key=lambda d: d in missing):
        if is_missing:
            days = list(group)
            runs.append((days[0], days[-1]))
    return tuple(runs)


def plan_rectangles(
    missing_by_key: dict[str, set[dt.date]],
    *,
    sessions: list[dt.date],
    key_order: list[str],
) -> list[Rectangle]:
    """Cover exactly the missing (session, key) pairs with few rectangles.

    `sessions` are the target sessions in order; `key_order` is the dynamic partitions' order (a
    rectangle's keys must be contiguous in it). Keys whose missing sessions form the same runs and
    that stand next to each other in `key_order` share rectangles.
    """
    position = {key: i for i, key in enumerate(key_order)}
    unknown = sorted(set(missing_by_key) - set(position))
    if unknown:
        raise ValueError(f"keys not registered as partitions: {unknown}")
    session_set = set(sessions)
    ordered = sorted((k for k, days in missing_by_key.items() if days & session_set), key=position.__getitem__)
    rectangles: list[Rectangle] = []
    block: list[str] = []
    block_runs: tuple = ()

    def flush() -> None:
        for first, last in block_runs:
            rectangles.append(Rectangle(first, last, tuple(block)))

    for key in ordered:
        runs = _runs_of_sessions(missing_by_key[key] & session_set, sessions)
        contiguous = block and position[key] == position[block[-1]] + 1
        if contiguous and runs == block_runs:
            block.append(key)
        else:
            flush()
            block, block_runs = [key], runs
    flush()
    return rectangles
