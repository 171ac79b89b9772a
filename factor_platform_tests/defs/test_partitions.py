"""`rectangle()` reads a run's sessions and keys from its partition key range, per dimension; it
must give exactly the (date, key) pairs Dagster itself gives the run as `context.partition_keys`."""

import datetime as dt

import dagster as dg

from factor_platform.defs.partitions import rectangle, symbol_day_partitions
from factor_platform.planning.rectangles import RANGE_END_TAG, RANGE_START_TAG


def test_rectangle_is_the_runs_partition_keys(sqlite_instance):
    seen = {}

    @dg.asset(partitions_def=symbol_day_partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def probe(context: dg.AssetExecutionContext) -> None:
        seen["rectangle"] = rectangle(context)
        seen["keys"] = {tuple(str(k).split("|")) for k in context.partition_keys}

    # dynamic order differs from sorted order, and the range spans Good Friday 2025 (no session)
    sqlite_instance.add_dynamic_partitions("symbol", ["MSFT", "AAPL", "ZZZ", "BBB", "CCC"])
    tags = {RANGE_START_TAG: "2025-04-16|AAPL", RANGE_END_TAG: "2025-04-22|BBB"}
    assert dg.materialize([probe], instance=sqlite_instance, tags=tags).success
    days, symbols = seen["rectangle"]
    assert days == [dt.date(2025, 4, 16), dt.date(2025, 4, 17), dt.date(2025, 4, 21), dt.date(2025, 4, 22)]
    assert symbols == ["AAPL", "BBB", "ZZZ"]
    assert {(d.isoformat(), s) for d in days for s in symbols} == seen["keys"]


def test_materialized_keys_looked_up_by_key_are_dagsters_own_answer(sqlite_instance, monkeypatch):
    from factor_platform.planning import state as planner

    sqlite_instance.add_dynamic_partitions("symbol", ["AAA", "BBB"])
    done = ["2025-04-16|AAA", "2025-04-17|AAA", "2025-04-16|BBB"]
    for key in done:
        sqlite_instance.report_runless_asset_event(dg.AssetMaterialization("prices", partition=key))
    sqlite_instance.report_runless_asset_event(dg.AssetMaterialization("symbol_metrics", partition="2025-04-17|BBB"))
    wanted = ["2025-04-16|AAA", "2025-04-17|AAA", "2025-04-17|BBB", "2025-04-21|AAA"]
    by_key = planner.materialized(sqlite_instance, "prices", wanted)
    monkeypatch.setattr(planner, "_KEYS_PER_QUERY", 1)  # one key per query: the chunks add up
    chunked = planner.materialized(sqlite_instance, "prices", wanted)
    whole_history = sqlite_instance.get_materialized_partitions(dg.AssetKey("prices")) & set(wanted)
    assert by_key == chunked == whole_history == {"2025-04-16|AAA", "2025-04-17|AAA"}
