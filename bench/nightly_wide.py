"""Worker: the nightly increment at 5,000 symbols (plus the factor ETFs and 50 portfolios).

A year of 5,000 symbols through Dagster is ~3.8M asset-partitions (over an hour of event log), so
the history is made the way a real deployment gets it on its first night, and not timed:

1. untimed — "the first night" (`first_night`, shared with bench/nightly_daemon.py): import the
   portfolios (incepted on the previous session) and materialize() the previous session for every
   symbol and portfolio: the prices asset fetches each symbol's 300-session lookback (the symbol is
   new), computes betas/metrics, loads profiles and fundamentals.
2. timed   — "the next night": materialize() of the latest closed session (every registered symbol,
   every portfolio), as `factor-platform materialize` runs it: FACTOR_PLATFORM_WORKERS processes
   ("workers": 1 for one process). The daemon's path (schedule -> sensor) is bench/nightly_daemon.py.

args: {"symbols", "portfolios", "analytics": "postgres", "pyspy": null | path, "label": str, "workers": int}
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from build import platform_environment, rss_gib, start_pyspy, stop_pyspy
from common import emit, log, worker_args


def main() -> None:
    args = worker_args()
    with platform_environment(args.get("analytics", "postgres")) as home:
        run(args, home)


def run(args: dict, home: Path) -> None:
    from factor_platform.running.execution import materialize
    from factor_platform.settings import workers

    night = first_night(args, home, "nightly_wide")
    label = args["label"]
    sampler = start_pyspy(args["pyspy"]) if args.get("pyspy") else None
    started, cpu = time.perf_counter(), time.process_time()
    # As `factor-platform materialize` runs it: FACTOR_PLATFORM_WORKERS processes (unless args say otherwise).
    outcome = materialize(
        night.db,
        start=night.latest,
        end=night.latest,
        settings=night.settings,
        progress=_progress,
        workers=args.get("workers") or workers(),
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if sampler:
        stop_pyspy(sampler)
    log(
        f"  nightly_wide[{label}]: nightly {night.latest}: {outcome['partitions']:,} asset-partitions in {outcome['runs']} runs, "
        f"{seconds:.1f} s (this process's CPU {cpu:.1f} s); failures {len(outcome['failures'])}"
    )
    emit(
        {
            "scenario": "nightly_increment_5000",
            "seconds": seconds,
            "cpu_seconds": cpu,
            "asset_partitions": outcome["partitions"],
            "runs": outcome["runs"],
            "failures": len(outcome["failures"]),
            "symbols": len(night.universe),
            "peak_gib": rss_gib(),
        }
    )


@dataclass(frozen=True)
class FirstNight:
    """The state the first night leaves: the latest closed session is the next night's."""

    db: object  # factor_platform.storage.Database
    settings: object  # factor_platform.settings.Settings
    latest: dt.date
    previous: dt.date
    universe: list[str]
    portfolios: list[str]


def first_night(args: dict, home: Path, name: str, *, symbol_sessions: int = 1) -> FirstNight:
    """Untimed set-up: import args["portfolios"] generated portfolios (incepted on the session before
    the latest) and materialize() that session for args["symbols"] symbols and every portfolio; with
    `symbol_sessions` > 1, the symbol layer's `symbol_sessions` sessions before the latest (the nightly
    schedule computes every missing session of its catch-up range, so its bench starts with them done)."""
    import pandas as pd
    from dagster_floor import symbol_names
    from portfolio_gen import book

    from factor_platform.domain import sessions
    from factor_platform.layers.books import import_portfolio
    from factor_platform.running.execution import materialize
    from factor_platform.settings import Settings, workers
    from factor_platform.sources import price_source
    from factor_platform.storage import Database

    settings = Settings.from_env()
    db = Database(settings.db_url)
    db.init_schema()
    latest = sessions.latest_closed_session(name=settings.calendar)
    previous = sessions.sessions_before(latest, 1, settings.calendar)
    universe = symbol_names(args["symbols"])

    portfolios = book(
        universe,
        args["portfolios"],
        sessions=[previous, latest],
        price_of=_price_lookup(price_source("sample"), universe, previous, latest, pd),
    )
    folder = home / "portfolios"
    folder.mkdir()
    for pid, text in portfolios.items():
        (folder / f"{pid}.csv").write_text(text)
        import_portfolio(db, folder / f"{pid}.csv", portfolio_id=pid, equity=10_000_000)

    label = args["label"]
    log(
        f"  {name}[{label}]: first night (untimed) {symbol_sessions} session(s) through {previous}: {len(universe):,} symbols with their lookback, {len(portfolios)} portfolios"
    )
    started = time.perf_counter()
    first = materialize(
        db,
        start=sessions.sessions_before(latest, symbol_sessions, settings.calendar),
        end=previous,
        symbols=universe,
        portfolios=list(portfolios),
        settings=settings,
        progress=_progress,
        workers=workers() if symbol_sessions > 1 else 1,  # untimed: both cores for the longer set-up
    )
    log(
        f"  {name}[{label}]: first night {first['partitions']:,} asset-partitions in {time.perf_counter() - started:.0f} s; "
        f"failures {len(first['failures'])}"
    )
    return FirstNight(db, settings, latest, previous, universe, list(portfolios))


def _progress(line: str) -> None:
    log("    " + line)


def _price_lookup(source, universe, first, last, pd):
    closes = source.fetch_prices(universe, first, last).frame.set_index(["symbol", "date"])["close"]
    return lambda symbol, day: float(closes.loc[(symbol, pd.Timestamp(day))])


if __name__ == "__main__":
    main()
