"""Onboarding through the portfolio sensor, with a real Postgres Dagster instance and real runs.

Asserts on Dagster's own bookkeeping: the materialization events per partition in the event log.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from factor_platform.defs.portfolios.sensors import portfolio_sensor
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.layers.books import import_portfolio
from factor_platform.running.runs import QUIET_RUN_CONFIG, load_definitions
from factor_platform_tests.defs.conftest import db_url

HEADER = "symbol,quantity,position_type,investment_class,entry_price,entry_date\n"
LATEST = sessions.latest_closed_session()
INCEPTION = sessions.sessions_before(LATEST, 3)


def _import(db, tmp_path, pid, symbols):
    path = tmp_path / f"{pid}.csv"
    path.write_text(HEADER + "".join(f"{s},100,LONG,PUBLIC,50,{INCEPTION}\n" for s in symbols))
    import_portfolio(db, path, portfolio_id=pid)


def _tick(instance, db, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"analytics_db": AnalyticsDatabase(url=db_url(db))}
    )
    result = portfolio_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _execute(instance, requests):
    defs = load_definitions()
    for request in requests:
        job = defs.resolve_job_def(request.job_name)
        result = job.execute_in_process(
            run_config=QUIET_RUN_CONFIG,
            instance=instance,
            raise_on_error=False,
            tags={**request.tags, "dagster/run_key": request.run_key},
        )
        assert result.success, request.run_key


def _events_by_partition(instance, asset):
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    counts: dict[str, int] = {}
    for record in records:
        counts[record.partition_key] = counts.get(record.partition_key, 0) + 1
    return counts


@pytest.mark.slow
def test_onboarding_computes_only_new_symbols_and_own_partitions(analytics, postgres_instance, tmp_path):
    db, instance = analytics, postgres_instance
    _import(db, tmp_path, "first", ["AAA", "BBB"])
    first = _tick(instance, db, None)
    jobs = sorted(r.job_name for r in first.run_requests)
    assert jobs == ["reference_data_job", "symbol_layer_job"]  # the portfolio waits for its symbols
    symbol_run = next(r for r in first.run_requests if r.job_name == "symbol_layer_job")
    assert symbol_run.tags["dagster/asset_partition_range_start"] == f"{INCEPTION}|AAA"
    assert symbol_run.tags["dagster/asset_partition_range_end"].endswith("|USMV")
    # Until its symbol run has finished, the portfolio is not requested again, nor its symbols.
    waiting = _tick(instance, db, first.cursor)
    assert waiting.run_requests == [] and waiting.dynamic_partitions_requests == []
    _execute(instance, first.run_requests)
    second = _tick(instance, db, waiting.cursor)
    assert [r.job_name for r in second.run_requests] == ["portfolio_layer_job"]
    assert second.run_requests[0].tags["dagster/asset_partition_range_start"] == f"{INCEPTION}|first"
    _execute(instance, second.run_requests)
    assert json.loads(second.cursor)["waiting"] == {}
    before = _events_by_partition(instance, "symbol_factor_exposures")

    # A second portfolio holds a known symbol (BBB) and a new one (CCC): only CCC is computed.
    _import(db, tmp_path, "second", ["BBB", "CCC"])
    third = _tick(instance, db, second.cursor)
    added = {r.partitions_def_name: list(r.partition_keys) for r in third.dynamic_partitions_requests}
    assert added == {"portfolio": ["second"], "symbol": ["CCC"]}
    _execute(instance, third.run_requests)
    fourth = _tick(instance, db, third.cursor)
    _execute(instance, fourth.run_requests)
    after = _events_by_partition(instance, "symbol_factor_exposures")
    new_events = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    days = [d.date().isoformat() for d in sessions.sessions_in_range(INCEPTION, LATEST)]
    assert new_events == {f"{d}|CCC": 1 for d in days}  # existing symbols got no event at all
    snapshots = instance.get_materialized_partitions(dg.AssetKey("portfolio_snapshots"))
    assert snapshots == {f"{d}|{p}" for d in days for p in ("first", "second")}
    assert len(db.read("portfolio_snapshots", {"portfolio_id": "second"})) == len(days)
    # Nothing more to do: a further tick requests nothing.
    fifth = _tick(instance, db, fourth.cursor)
    assert fifth.run_requests == []

    # A changed book: its figures go with the import, and the sensor computes it again under a new
    # run key (the daemon skips a key it has seen), from inception, and only it.
    path = tmp_path / "first.csv"
    path.write_text(HEADER + f"AAA,300,LONG,PUBLIC,50,{INCEPTION}\nBBB,100,LONG,PUBLIC,50,{INCEPTION}\n")
    assert import_portfolio(db, path, portfolio_id="first")["status"] == "updated"
    assert len(db.read("portfolio_snapshots", {"portfolio_id": "first"})) == 0
    again = _tick(instance, db, fifth.cursor)
    (request,) = again.run_requests
    assert request.job_name == "portfolio_layer_job" and request.run_key != second.run_requests[0].run_key
    assert request.tags["dagster/asset_partition_range_start"] == f"{INCEPTION}|first"
    _execute(instance, again.run_requests)
    assert len(db.read("portfolio_snapshots", {"portfolio_id": "first"})) == len(days)
    assert _tick(instance, db, again.cursor).run_requests == []


def test_two_portfolios_onboarded_together_share_a_new_symbol_once(analytics, postgres_instance, tmp_path):
    db, instance = analytics, postgres_instance
    _import(db, tmp_path, "alpha", ["DDD"])
    _import(db, tmp_path, "beta", ["DDD", "EEE"])
    tick = _tick(instance, db, None)
    symbol_runs = [r for r in tick.run_requests if r.job_name == "symbol_layer_job"]
    ranges = [
        (
            r.tags["dagster/asset_partition_range_start"].split("|")[1],
            r.tags["dagster/asset_partition_range_end"].split("|")[1],
        )
        for r in symbol_runs
    ]
    assert ranges == [("DDD", "USMV"), ("EEE", "EEE")]  # DDD once, by alpha's run; beta's adds only EEE
    waiting = json.loads(tick.cursor)["waiting"]
    assert len(waiting["alpha"]) == 1 and len(waiting["beta"]) == 2  # beta waits on both runs
    # alpha's run done, beta's not yet: alpha proceeds without waiting for beta.
    _execute(instance, [r for r in tick.run_requests if r.tags.get("factor_platform/onboarding") == "alpha"])
    next_tick = _tick(instance, db, tick.cursor)
    assert [r.tags["dagster/asset_partition_range_start"].split("|")[1] for r in next_tick.run_requests] == ["alpha"]


def test_cursor_survives_a_restart_and_sql_inserts_count(analytics, postgres_instance):
    """Rows written by another application (plain SQL) are onboarded like imported ones, once."""
    db, instance = analytics, postgres_instance
    import pandas as pd

    db.upsert(
        "portfolios",
        pd.DataFrame(
            [
                {
                    "portfolio_id": "external",
                    "name": "External",
                    "starting_equity": 1e6,
                    "inception_date": pd.Timestamp(INCEPTION),
                    "created_at": pd.Timestamp.now(),
                }
            ]
        ),
    )
    db.upsert(
        "positions",
        pd.DataFrame(
            [
                {
                    "position_id": "external:1",
                    "portfolio_id": "external",
                    "symbol": "FFF",
                    "position_type": "LONG",
                    "investment_class": "PUBLIC",
                    "quantity": 10.0,
                    "entry_price": 1.0,
                    "entry_date": pd.Timestamp(INCEPTION),
                }
            ]
        ),
    )
    first = _tick(instance, db, None)
    assert {r.partitions_def_name for r in first.dynamic_partitions_requests} == {"portfolio", "symbol"}
    # A restarted daemon evaluates with the stored cursor: the same portfolio is not onboarded twice.
    again = _tick(instance, db, first.cursor)
    assert again.dynamic_partitions_requests == [] and again.run_requests == []
