"""Portfolios caught up over the same sessions share one run (a nightly's 500 portfolios: one run, not 500
runs of Dagster's overhead); a portfolio that a queued or running run computes waits for it."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from factor_platform.defs.jobs import portfolio_layer_job
from factor_platform.defs.portfolios.sensors import portfolio_sensor
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.layers.books import import_portfolio
from factor_platform.layers.prices import update_prices
from factor_platform.planning.portfolio_runs import catch_up_run, group_catch_ups
from factor_platform.planning.state import all_etfs
from factor_platform.running.runs import load_definitions
from factor_platform.sources.sample import SampleSource
from factor_platform_tests.defs.conftest import db_url
from factor_platform_tests.defs.test_sensor import END, LATEST, START, WINDOW, book


def _run(pid: str, *, first=None, version=1):
    return catch_up_run(
        book(pid, ["AAA"], version=version),
        latest=LATEST,
        symbols_through=LATEST,
        snapshots_through=None if first is None else sessions.sessions_before(first, 1),
        stale_from=None,
        stale_stamp=None,
        window=WINDOW,
    )


def test_the_same_sessions_of_neighbouring_portfolios_are_one_run():
    runs = [_run(p) for p in ("a", "b", "c")]
    (grouped,) = group_catch_ups(runs, ["a", "b", "c"])
    assert grouped.run.rectangle.keys == ("a", "b", "c")
    assert (grouped.tags[START], grouped.tags[END]) == ("2025-06-02|a", f"{LATEST}|c")
    assert grouped.run_key.startswith(f"portfolios:2025-06-02:{LATEST}:a..c:3:")
    assert group_catch_ups(list(reversed(runs)), ["a", "b", "c"])[0].run_key == grouped.run_key  # asked once
    changed = group_catch_ups([runs[0], _run("b", version=2), runs[2]], ["a", "b", "c"])[0]
    assert changed.run_key != grouped.run_key  # a changed book is new work


def test_other_sessions_or_a_portfolio_between_split_the_run():
    late = dt.date(2025, 6, 20)
    runs = [_run("a"), _run("b", first=late), _run("c"), _run("e")]
    grouped = group_catch_ups(runs, ["a", "b", "c", "d", "e"])
    assert sorted((r.run.rectangle.first, r.run.rectangle.keys) for r in grouped) == [
        (dt.date(2025, 6, 2), ("a",)),
        (dt.date(2025, 6, 2), ("c",)),
        (dt.date(2025, 6, 2), ("e",)),
        (late, ("b",)),
    ]
    assert {r.run_key for r in grouped} == {r.run_key for r in runs}  # a run of one keeps its key


def test_a_tick_asks_one_run_for_every_portfolio_and_none_while_it_is_in_flight(analytics, sqlite_instance, tmp_path):
    db, instance = analytics, sqlite_instance
    latest = sessions.latest_closed_session()
    entry = sessions.sessions_before(latest, 3)
    update_prices(
        db, SampleSource(), ["AAA", *all_etfs()], [sessions.sessions_before(latest, 10), latest], calendar="XNYS"
    )
    for pid in ("p1", "p2", "p3"):
        path = tmp_path / f"{pid}.csv"
        path.write_text(
            f"symbol,quantity,position_type,investment_class,entry_price,entry_date\nAAA,10,LONG,PUBLIC,50,{entry}\n"
        )
        import_portfolio(db, path, portfolio_id=pid)
    instance.add_dynamic_partitions("portfolio", ["p1", "p2", "p3"])
    instance.add_dynamic_partitions("symbol", ["AAA", *all_etfs()])
    context = dg.build_sensor_context(instance=instance, resources={"analytics_db": AnalyticsDatabase(url=db_url(db))})
    (request,) = portfolio_sensor.evaluate_tick(context).run_requests
    assert request.job_name == portfolio_layer_job.name
    assert (request.tags[START], request.tags[END]) == (f"{entry}|p1", f"{latest}|p3")

    job = load_definitions().resolve_job_def(request.job_name)
    instance.create_run_for_job(job, tags=request.tags, status=dg.DagsterRunStatus.NOT_STARTED)
    context = dg.build_sensor_context(instance=instance, resources={"analytics_db": AnalyticsDatabase(url=db_url(db))})
    assert portfolio_sensor.evaluate_tick(context).run_requests == []  # p1..p3 wait for the run that computes them


def test_a_large_block_is_cut_into_one_run_per_process():
    order = [f"p{i:03d}" for i in range(130)]
    runs = [_run(p) for p in order]
    assert len(group_catch_ups(runs, order)) == 1
    cut = group_catch_ups(runs, order, processes=4)  # 130 portfolios: 2 runs of 65 (at least 50 each)
    assert [r.run.rectangle.keys for r in cut] == [tuple(order[:65]), tuple(order[65:])]
    assert [r.run_key for r in group_catch_ups(runs, order, processes=4)] == [r.run_key for r in cut]
