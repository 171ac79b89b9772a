"""Worker: onboarding of a portfolio of known symbols through the daemon and `portfolio_sensor`.

Set-up (untimed): the symbol layer of `symbols` sample symbols over `sessions` sessions, through
materialize(); then `dagster-daemon run` over two code locations — the platform and
bench/sensor_floor_defs.py — on the platform's instance config (QueuedRunCoordinator,
dequeue every 1 s) in a scratch Postgres.

Measured, `trials` times each, alternating:
Each trial waits a random 0-5 s first (a new phase against the daemon's 5 s sensor loop).
- floor:   a token written to the floor sensor's trigger file -> its no-op run has ended
           (Dagster's sensor -> run cost on this daemon: sensor loop, queue, run process);
- onboard: `import_portfolio` of 15 already-built symbols, incepted on the first built session
           (new rows in `portfolios`) -> its last snapshot is in the analytics DB and its run has
           ended. The run's create/start/end times split that into sensor wait, queue + launch,
           and the run itself.

args: {"symbols", "sessions", "holdings", "trials", "label"}
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from build import platform_environment
from common import BENCH_DIR, emit, log, worker_args

POLL_S = 0.05
TIMEOUT_S = 120
PORTFOLIO_JOB = "portfolio_layer_job"


def main() -> None:
    args = worker_args()
    with platform_environment("postgres") as home:
        os.environ["BENCH_SENSOR_TRIGGER"] = str(home / "trigger")
        run(args, home)


def _wait(what: str, done, started: float) -> float:
    while time.time() - started < TIMEOUT_S:
        if done():
            return time.time()
        time.sleep(POLL_S)
    raise TimeoutError(f"{what}: not done after {TIMEOUT_S} s (see {os.environ['DAGSTER_HOME']}/daemon.log)")


def _run_times(instance, tags: dict, job_name: str | None = None) -> tuple[float, float, float] | None:
    """(create, start, end) of the newest finished run with `tags` (values: a tag's suffix when
    `job_name` is given), or None while there is none."""
    import dagster as dg

    if job_name:
        records = [
            r
            for r in instance.get_run_records(filters=dg.RunsFilter(job_name=job_name), limit=20)
            if all(r.dagster_run.tags.get(k, "").endswith(v) for k, v in tags.items())
        ][:1]
    else:
        records = instance.get_run_records(filters=dg.RunsFilter(tags=tags), limit=1)
    if not records or records[0].dagster_run.status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
        return None
    r = records[0]
    if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"run {r.dagster_run.run_id} failed")
    return r.create_timestamp.timestamp(), r.start_time, r.end_time


def run(args: dict, home: Path) -> None:
    import dagster as dg
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa
    from dagster_floor import symbol_names
    from portfolio_gen import portfolio_csv

    from factor_platform.domain import sessions
    from factor_platform.layers.books import import_portfolio
    from factor_platform.planning.rectangles import RANGE_START_TAG
    from factor_platform.running.execution import materialize
    from factor_platform.settings import Settings
    from factor_platform.sources import price_source
    from factor_platform.storage import Database

    settings = Settings.from_env()
    db = Database(settings.db_url)
    db.init_schema()
    latest = sessions.latest_closed_session(name=settings.calendar)
    first = sessions.sessions_before(latest, args["sessions"] - 1, settings.calendar)
    days = [d.date() for d in sessions.sessions_in_range(first, latest, settings.calendar)]
    universe = symbol_names(args["symbols"])
    started = time.perf_counter()
    built = materialize(db, start=days[0], end=latest, symbols=universe, settings=settings)
    log(
        f"  sensor[{args['label']}]: set-up {built['partitions']:,} asset-partitions ({len(universe)} symbols x {len(days)} sessions) "
        f"in {time.perf_counter() - started:.0f} s; failures {len(built['failures'])}"
    )
    closes = price_source("sample").fetch_prices(universe, days[0], latest).frame.set_index(["symbol", "date"])["close"]

    def price_of(symbol: str, day: dt.date) -> float:
        return float(closes.loc[(symbol, pd.Timestamp(day))])

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")])}
    daemon_log = open(home / "daemon.log", "w")
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-m", "factor_platform.definitions", "-m", "sensor_floor_defs"],
        env=env,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    instance = dg.DagsterInstance.get()
    trigger = home / "trigger"
    last_snapshot = sa.text("SELECT max(date) FROM portfolio_snapshots WHERE portfolio_id = :pid")
    rng = np.random.default_rng(11)
    floors, onboards, parts = [], [], []
    try:

        def floor_trial(token: str) -> tuple[float, tuple[float, float, float]]:
            t0 = time.time()
            trigger.write_text(token)
            _wait("floor run", lambda: _run_times(instance, {"bench/token": token}) is not None, t0)
            created, start, end = _run_times(instance, {"bench/token": token})
            return end - t0, (created - t0, start - created, end - start)

        log(
            f"  sensor[{args['label']}]: warm-up floor run (daemon start, code servers): {floor_trial('warmup')[0]:.1f} s"
        )
        floor_parts = []
        for trial in range(args["trials"]):
            time.sleep(float(rng.uniform(0, 5)))  # a random phase against the 5 s sensor loop
            seconds, split = floor_trial(f"floor-{trial}")
            floors.append(seconds)
            floor_parts.append(split)
            time.sleep(float(rng.uniform(0, 5)))
            pid = f"bench_sensor_{trial}"
            holdings = [str(s) for s in rng.choice(np.asarray(universe), size=args["holdings"], replace=False)]
            path = home / f"{pid}.csv"
            path.write_text(
                portfolio_csv(
                    rng, holdings, sessions=days, price_of=price_of, n_holdings=(len(holdings), len(holdings))
                )
            )
            t0 = time.time()
            import_portfolio(db, path, portfolio_id=pid, equity=10_000_000)
            tags = {RANGE_START_TAG: f"|{pid}"}

            def onboarded() -> bool:
                with db.engine.connect() as conn:
                    day = conn.execute(last_snapshot, {"pid": pid}).scalar()
                return (
                    day is not None
                    and pd.Timestamp(day).date() == latest
                    and _run_times(instance, tags, PORTFOLIO_JOB) is not None
                )

            t1 = _wait("onboarding", onboarded, t0)
            created, start, end = _run_times(instance, tags, PORTFOLIO_JOB)
            onboards.append(t1 - t0)
            parts.append((created - t0, start - created, end - start))
            log(
                f"  sensor[{args['label']}]: trial {trial}: floor {floors[-1]:.1f} s = "
                + " + ".join(f"{x:.1f}" for x in floor_parts[-1])
                + f"; onboarding {t1 - t0:.1f} s = sensor {created - t0:.1f} s + queue/launch {start - created:.1f} s + run {end - start:.1f} s"
            )
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        daemon_log.close()
        instance.dispose()
    emit(
        {
            "scenario": "onboard_via_sensor",
            "seconds": statistics.median(onboards),
            "max_seconds": max(onboards),
            "mean_seconds": statistics.mean(onboards),
            "floor_mean_seconds": statistics.mean(floors),
            "floor_sensor_s": statistics.median(p[0] for p in floor_parts),
            "floor_launch_s": statistics.median(p[1] for p in floor_parts),
            "floor_run_s": statistics.median(p[2] for p in floor_parts),
            "floor_seconds": statistics.median(floors),
            "floor_max_seconds": max(floors),
            "trials": len(onboards),
            "sensor_s": statistics.median(p[0] for p in parts),
            "launch_s": statistics.median(p[1] for p in parts),
            "run_s": statistics.median(p[2] for p in parts),
            "sessions": len(days),
            "holdings": args["holdings"],
        }
    )


if __name__ == "__main__":
    main()
