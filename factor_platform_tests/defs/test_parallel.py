"""A large plan on several processes (`materialize(workers=N)`): chunk runs in waves, the same
tables and the same Dagster bookkeeping as one process."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from factor_platform.domain import sessions
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.books import import_portfolio
from factor_platform.layers.names import PORTFOLIO_ASSETS, SYMBOL_DAY_ASSETS
from factor_platform.planning.planner import Plan, PlannedRun
from factor_platform.planning.rectangles import Rectangle
from factor_platform.running import execution
from factor_platform.running.execution import materialize
from factor_platform.running.runs import execute_run, load_definitions
from factor_platform_tests.defs.conftest import TEST_END, TEST_START

STOCKS = ["AAA", "BBB", "CCC", "DDD"]
TABLES = [
    "prices",
    "symbol_factor_exposures",
    "symbol_metrics",
    "position_values",
    "portfolio_snapshots",
    "portfolio_factor_exposures",
    "portfolio_risk",
    "stress_results",
]


def _dump(db) -> dict[str, pd.DataFrame]:
    return {t: db.read(t).drop(columns=["updated_at"], errors="ignore") for t in TABLES}


@pytest.mark.slow
def test_two_workers_write_what_one_process_writes(analytics, pooled_postgres_instance, tmp_path, monkeypatch):
    db, instance = analytics, pooled_postgres_instance
    days = [d.date() for d in sessions.sessions_in_range(TEST_START, TEST_END)]
    for pid, held in (("alpha", "AAA,BBB"), ("beta", "CCC,DDD")):
        csv = tmp_path / f"{pid}.csv"
        csv.write_text(
            "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price\n"
            + "".join(f"{s},100,LONG,PUBLIC,50,{TEST_START},,\n" for s in held.split(","))
        )
        import_portfolio(db, csv, portfolio_id=pid, equity=100_000)
    lines: list[str] = []  # the test's plan is small: `auto` would run it in this process
    outcome = materialize(
        db,
        start=TEST_START,
        end=TEST_END,
        symbols=STOCKS,
        portfolios=["alpha", "beta"],
        instance=instance,
        workers=2,
        executor="processes",
        progress=lines.append,
    )
    assert outcome["failures"] == []
    # waves: prices chunks (+ reference data), then betas/metrics chunks, then portfolio chunks
    assert sum("[wave 1/3]" in line and "[prices]" in line for line in lines) == 2, lines
    assert sum("[wave 2/3]" in line for line in lines) == 2, lines
    assert sum("[wave 3/3]" in line for line in lines) == 2, lines
    symbols = STOCKS + factor_tickers(load_regressions())
    for asset in SYMBOL_DAY_ASSETS:
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {f"{d}|{s}" for d in days for s in symbols}
    for asset in PORTFOLIO_ASSETS:
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {
            f"{d}|{p}" for d in days for p in ("alpha", "beta")
        }
    # the market-data pool was set up once, before the chunk runs raced to claim it
    assert {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()} == {"market_data": 2}
    parallel = _dump(db)
    assert all(len(frame) for frame in parallel.values())

    # The same rectangles again in this process, one run per layer: every row is the same.
    defs = load_definitions()
    order = tuple(instance.get_dynamic_partitions("symbol"))
    for run in (
        PlannedRun("symbol_layer_job", tuple(SYMBOL_DAY_ASSETS), Rectangle(days[0], days[-1], order)),
        PlannedRun("portfolio_layer_job", tuple(PORTFOLIO_ASSETS), Rectangle(days[0], days[-1], ("alpha", "beta"))),
    ):
        assert execute_run(defs, instance, run).success
    for table, frame in _dump(db).items():
        pd.testing.assert_frame_equal(frame, parallel[table], check_exact=True, obj=table)


def test_auto_runs_a_large_plan_on_processes_and_a_small_one_here():
    days = sessions.sessions_in_range(TEST_START, TEST_END)
    small = Plan([PlannedRun("symbol_layer_job", ("prices",), Rectangle(TEST_START, TEST_END, ("AAA",)))], [], [])
    large_keys = tuple(f"S{i:05d}" for i in range(execution.PARALLEL_MIN_PARTITIONS // len(days) + 1))
    large = Plan([PlannedRun("symbol_layer_job", ("prices",), Rectangle(TEST_START, TEST_END, large_keys))], [], [])

    def choose(executor, plan, workers):
        return execution.resolve_executor(executor, plan, workers=workers, calendar="XNYS")

    assert [choose("auto", small, 4), choose("auto", large, 4), choose("auto", large, 1)] == [
        "local",
        "processes",
        "local",
    ]
    assert choose("celery", small, 1) == "celery" and choose("local", large, 4) == "local"
    with pytest.raises(ValueError, match="executor 'threads': expected one of auto, local, processes, celery"):
        choose("threads", small, 2)


def test_a_failed_chunk_stops_the_later_waves_and_says_what_did_not_run():
    import datetime as dt
    from concurrent.futures import ThreadPoolExecutor

    from factor_platform.running.runs import ChunkOutcome, run_chunk_waves

    day = dt.date(2025, 6, 30)
    prices = [PlannedRun("symbol_layer_job", ("prices",), Rectangle(day, day, keys)) for keys in (("AAA",), ("BBB",))]
    betas = [PlannedRun("symbol_layer_job", ("symbol_factor_exposures",), Rectangle(day, day, ("AAA", "BBB")))]
    executed = []

    def runner(run):
        executed.append(run)
        ok = run.rectangle.keys != ("BBB",)
        return ChunkOutcome(run, f"id-{len(executed)}", ok, 0.1, None if ok else "step prices: boom")

    with ThreadPoolExecutor(2) as pool:
        partitions, failed, outcomes = run_chunk_waves([prices, betas], runner, pool)
    assert sorted(r.rectangle.keys for r in executed) == [("AAA",), ("BBB",)]  # wave 2 never ran
    assert partitions == 1 and len(outcomes) == 2
    assert failed[0].startswith("run id-") and "boom" in failed[0]
    assert "not run: an earlier wave failed" in failed[1] and "symbol_factor_exposures" in failed[1]
