"""Worker: the platform end to end through `factor_platform.running.execution.materialize`.

One process, in order (each step on the state the previous one left):

1. full_build        — `symbols` sample symbols (+ the factor ETFs) and `portfolios` generated
                       portfolios (bench/portfolio_gen.py, imported with `import_portfolio`) over the
                       `sessions` sessions before the latest closed session: ONE materialize() call.
2. peak_memory       — ru_maxrss of this process right after the full build.
3. nightly_increment — materialize() of the latest closed session (all symbols, all portfolios).
4. onboard_known_symbols — import a portfolio of already-built symbols and materialize it
                       (materialize(portfolios=[id]) from its inception = the build's first session).
5. onboard_new_symbols — the same with `new_symbols` never-seen symbols (a year of history each).
6. rebase_held_symbol — the most-held symbol's stored history is put on another basis (× 4, as if the
                       vendor re-based it for a 4:1 split): `materialize(symbols=[it], refresh=True)`
                       re-reads and re-bases it, then the next `materialize()` of the latest session
                       recomputes its dependents; partitions recomputed are compared with the minimum
                       (its metrics on every session + the seven portfolio assets of its holders).

Dagster instance: a scratch database on 127.0.0.1:5432, with the instance config factor-platform
writes for its embedded server (storage, run coordinator, concurrency) pointed at it, and the
platform's DAGSTER_EVENT_BATCH_SIZE=1000 / DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true.
Analytics database: a scratch Postgres database, or a temp SQLite file (`"analytics": "sqlite"`).

args: {"symbols", "sessions", "portfolios", "new_symbols", "analytics": "postgres"|"sqlite",
       "profile": null | "<.prof path: cProfile of the full build>",
       "pyspy": null | "<path: py-spy raw samples of the full build; <path>.<scenario> of the later ones>", "label": str,
       "only_full_build": bool, "patches": [experiment names, see apply_patches], "workers": int (default 1)}
"""

from __future__ import annotations

import contextlib
import cProfile
import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

from common import (
    PLATFORM_DAGSTER_ENV,
    dagster_home,
    emit,
    log,
    plain_pg_url,
    quiet_warnings,
    scratch_postgres,
    worker_args,
)


def instance_yaml(url: str) -> str:
    """factor-platform's generated dagster.yaml (instance._INSTANCE_YAML), minus its embedded-server marker."""
    from factor_platform.running.instance import _INSTANCE_YAML

    lines = [line for line in _INSTANCE_YAML.splitlines() if not line.startswith(("{marker}", "#"))]
    return "\n".join(lines).format(url=url) + "\n"


@contextlib.contextmanager
def analytics_url(kind: str):
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench_sqlite_") as folder:
            yield f"sqlite:///{Path(folder) / 'factor_platform.db'}"
    else:
        with scratch_postgres("bench_analytics") as url:
            yield url


def apply_patches(names: list[str]) -> None:
    """Measurement-only experiments on the platform code, applied in this process (never written).

    with_checks     the old execute_run(): execute_in_process(asset_selection=...), which adds back
                    every asset check of the selected assets (each resolves ALL partitions of its
                    asset). execute_run() now passes an empty check selection; this measures the fix.
    shared_instance get_instance() returns one DagsterInstance per process instead of a new one
                    per materialize() call.
    """
    import dagster as dg

    import factor_platform.running.execution as execution
    from factor_platform.running.runs import QUIET_RUN_CONFIG

    if "with_checks" in names:

        def execute_run(defs, instance, run, tags=None):
            return defs.resolve_job_def(run.job_name).execute_in_process(
                run_config=QUIET_RUN_CONFIG,
                instance=instance,
                tags={**run.tags(), **(tags or {})},
                asset_selection=[dg.AssetKey(a) for a in run.assets],
                raise_on_error=False,
            )

        execution.execute_run = execute_run
    if "shared_instance" in names:
        from functools import lru_cache

        execution.get_instance = lru_cache(maxsize=1)(execution.get_instance)
    unknown = set(names) - {"with_checks", "shared_instance"}
    if unknown:
        raise ValueError(f"unknown patches: {sorted(unknown)}")


def start_pyspy(path: str, pid: int | None = None):
    """py-spy sampling this process (wall clock: idle samples included, one stack per thread); with
    `pid`, that process and every process it starts (the daemon's code server and its runs)."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not exe:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid or os.getpid()),
            *(["--subprocesses"] if pid else []),
            "--format",
            "raw",
            "--output",
            path,
            "--rate",
            "25",
            "--idle",
            "--threads",
            "--nolineno",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach
    return proc


def stop_pyspy(proc) -> None:
    import signal

    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)


def rss_gib() -> float:
    """Peak resident memory of this process or of the largest of its finished children (the worker
    processes of `materialize(workers=N)`), in GiB (Linux reports KiB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024**2


@contextlib.contextmanager
def platform_environment(analytics: str = "postgres"):
    """What the build-like workers run in: scratch Dagster and analytics databases, a temp
    DAGSTER_HOME with the platform's instance config, the sample source; yields DAGSTER_HOME."""
    os.environ.update(PLATFORM_DAGSTER_ENV)
    os.environ["FACTOR_PLATFORM_PRICE_SOURCE"] = "sample"
    with scratch_postgres("bench_dagster") as dagster_url, analytics_url(analytics) as db_url:
        os.environ["FACTOR_PLATFORM_DB_URL"] = db_url
        with dagster_home("") as home:
            os.environ["DAGSTER_HOME"] = str(home)
            quiet_warnings()
            (home / "dagster.yaml").write_text(instance_yaml(plain_pg_url(dagster_url)))
            yield home


def main() -> None:
    args = worker_args()
    with platform_environment(args.get("analytics", "postgres")) as home:
        run(args, home)


def run(args: dict, home: Path) -> None:
    import numpy as np
    import pandas as pd
    from dagster_floor import symbol_names
    from portfolio_gen import book, portfolio_csv

    from factor_platform.domain import sessions
    from factor_platform.domain.factor_models import factor_tickers, load_regressions
    from factor_platform.layers.books import import_portfolio
    from factor_platform.running.execution import materialize
    from factor_platform.settings import Settings
    from factor_platform.sources import price_source
    from factor_platform.storage import Database

    apply_patches(args.get("patches", []))
    if args.get("patches"):
        log(f"  build[{args['label']}]: EXPERIMENT patches {args['patches']} (see apply_patches)")

    settings = Settings.from_env()
    workers = args.get("workers", 1)  # materialize() uses them for plans of PARALLEL_MIN_PARTITIONS or more
    db = Database(settings.db_url)
    db.init_schema()
    latest = sessions.latest_closed_session(name=settings.calendar)
    build_last = sessions.sessions_before(latest, 1, settings.calendar)
    build_days = [
        d.date()
        for d in sessions.sessions_in_range(
            sessions.sessions_before(build_last, args["sessions"] - 1, settings.calendar), build_last, settings.calendar
        )
    ]
    first = build_days[0]
    universe = symbol_names(args["symbols"])
    new_symbols = symbol_names(args["new_symbols"], prefix="Y")
    etfs = factor_tickers(load_regressions())

    frame = price_source("sample").fetch_prices(universe + new_symbols, first, latest).frame
    closes = frame.set_index(["symbol", "date"])["close"]

    def price_of(symbol: str, day: dt.date) -> float:
        return float(closes.loc[(symbol, pd.Timestamp(day))])

    folder = home / "portfolios"
    folder.mkdir()

    def imported(pid: str, text: str) -> dict:
        path = folder / f"{pid}.csv"
        path.write_text(text)
        return import_portfolio(db, path, portfolio_id=pid, equity=10_000_000)

    started = time.perf_counter()
    portfolios = book(universe, args["portfolios"], sessions=build_days, price_of=price_of)
    n_positions = sum(imported(pid, text)["positions"] for pid, text in portfolios.items())
    log(
        f"  build[{args['label']}]: imported {len(portfolios)} portfolios ({n_positions} positions) in {time.perf_counter() - started:.1f} s"
    )

    def progress(line: str) -> None:
        log("    " + line)

    # ---- 1. full build
    log(
        f"  build[{args['label']}]: full build {first}..{build_last} ({len(build_days)} sessions), "
        f"{len(universe)} symbols + {len(etfs)} ETFs, {len(portfolios)} portfolios, analytics={db.dialect}"
    )
    profiler = cProfile.Profile() if args.get("profile") else None
    sampler = start_pyspy(args["pyspy"]) if args.get("pyspy") else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    outcome = materialize(
        db,
        start=first,
        end=build_last,
        portfolios=list(portfolios),
        symbols=universe,
        settings=settings,
        progress=progress,
        workers=workers,
    )
    if profiler:
        profiler.disable()
        profiler.dump_stats(args["profile"])
    if sampler:
        stop_pyspy(sampler)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = rss_gib()
    rows = {
        t: db.count(t)
        for t in ["prices", "symbol_factor_exposures", "symbol_metrics", "position_values", "portfolio_snapshots"]
    }
    log(
        f"  build[{args['label']}]: full build {outcome['partitions']:,} asset-partitions in {outcome['runs']} runs, {seconds:.1f} s "
        f"({1000 * seconds / max(outcome['partitions'], 1):.2f} ms each; this process's CPU {cpu:.1f} s); failures {len(outcome['failures'])}, warnings {len(outcome['warnings'])}; rows {rows}"
    )
    for failure in outcome["failures"][:5]:
        log(f"    FAILED {failure}")
    emit(
        {
            "scenario": "full_build",
            "seconds": seconds,
            "cpu_seconds": cpu,
            "asset_partitions": outcome["partitions"],
            "runs": outcome["runs"],
            "failures": len(outcome["failures"]),
            "warnings": len(outcome["warnings"]),
            "analytics": db.dialect,
            "rows": rows,
            "sessions": len(build_days),
            "symbols": len(universe) + len(etfs),
            "portfolios": len(portfolios),
        }
    )
    emit({"scenario": "peak_memory", "gib": peak})
    if args.get("only_full_build"):
        return

    # ---- 3. nightly increment
    sampler = start_pyspy(args["pyspy"] + ".nightly_increment") if args.get("pyspy") else None
    started = time.perf_counter()
    outcome = materialize(db, start=latest, end=latest, settings=settings, progress=progress, workers=workers)
    seconds = time.perf_counter() - started
    if sampler:
        stop_pyspy(sampler)
    log(
        f"  build[{args['label']}]: nightly increment {latest}: {outcome['partitions']:,} asset-partitions in {outcome['runs']} runs, "
        f"{seconds:.1f} s; failures {len(outcome['failures'])}"
    )
    emit(
        {
            "scenario": "nightly_increment",
            "seconds": seconds,
            "asset_partitions": outcome["partitions"],
            "runs": outcome["runs"],
            "failures": len(outcome["failures"]),
        }
    )

    # ---- 4./5. onboarding
    rng = np.random.default_rng(7)
    for scenario, holdings in (
        (
            "onboard_known_symbols",
            [str(s) for s in rng.choice(np.asarray(universe), size=min(15, len(universe)), replace=False)],
        ),
        ("onboard_new_symbols", new_symbols),
    ):
        pid = f"bench_{scenario}"
        text = portfolio_csv(
            rng, holdings, sessions=build_days + [latest], price_of=price_of, n_holdings=(len(holdings), len(holdings))
        )
        sampler = start_pyspy(args["pyspy"] + "." + scenario) if args.get("pyspy") else None
        started = time.perf_counter()
        imported(pid, text)
        import_seconds = time.perf_counter() - started
        outcome = materialize(
            db, start=first, end=latest, portfolios=[pid], settings=settings, progress=progress, workers=workers
        )
        seconds = time.perf_counter() - started
        if sampler:
            stop_pyspy(sampler)
        log(
            f"  build[{args['label']}]: {scenario}: import {import_seconds:.2f} s + materialize {seconds - import_seconds:.1f} s "
            f"({outcome['partitions']:,} asset-partitions in {outcome['runs']} runs); failures {len(outcome['failures'])}"
        )
        emit(
            {
                "scenario": scenario,
                "seconds": seconds,
                "import_seconds": import_seconds,
                "asset_partitions": outcome["partitions"],
                "runs": outcome["runs"],
                "failures": len(outcome["failures"]),
                "holdings": len(holdings),
            }
        )

    # ---- 6. a re-basing of a held symbol
    rebase_held_symbol(db, latest, settings=settings, progress=progress)


def rebase_held_symbol(db, latest: dt.date, *, settings, progress) -> None:
    from factor_platform.calc.price_history import rebase
    from factor_platform.layers.invalidation import PORTFOLIO_STALE_ASSET
    from factor_platform.running.execution import materialize

    positions = db.read("positions", columns=["portfolio_id", "symbol", "investment_class"])
    public = positions[positions["investment_class"] == "PUBLIC"]
    symbol = public.groupby("symbol")["portfolio_id"].nunique().idxmax()
    holders = sorted(set(public.loc[public["symbol"] == symbol, "portfolio_id"]))
    stored = db.read("prices", {"symbol": symbol})
    db.upsert("prices", rebase(stored, close_factor=4.0, adj_factor=4.0))
    started = time.perf_counter()
    first = materialize(
        db, start=latest, end=latest, symbols=[symbol], settings=settings, progress=progress, refresh=True
    )
    stale = db.read("stale_partitions")
    second = materialize(db, start=latest, end=latest, settings=settings, progress=progress)
    seconds = time.perf_counter() - started
    snapshots = db.count_by("portfolio_snapshots", "portfolio_id", {"portfolio_id": holders})
    metric_days = db.count_by("symbol_metrics", "symbol", {"symbol": [symbol]}).get(symbol, 0)
    minimum = 1 + metric_days + 7 * sum(snapshots.values())  # its latest prices, its metrics, its holders
    partitions = first["partitions"] + second["partitions"]
    log(
        f"  build: rebase_held_symbol {symbol} ({len(stored)} stored rows, held by {len(holders)} portfolios): "
        f"{partitions:,} asset-partitions recomputed (minimum {minimum:,}) in {seconds:.1f} s; stale marked "
        f"{stale.groupby('asset').size().to_dict()}; left stale {db.count('stale_partitions')}"
    )
    emit(
        {
            "scenario": "rebase_held_symbol",
            "seconds": seconds,
            "asset_partitions": partitions,
            "minimum": minimum,
            "runs": first["runs"] + second["runs"],
            "failures": len(first["failures"]) + len(second["failures"]),
            "symbol": symbol,
            "holders": len(holders),
            "left_stale": db.count("stale_partitions"),
            "portfolio_stale": int((stale["asset"] == PORTFOLIO_STALE_ASSET).sum()),
        }
    )


if __name__ == "__main__":
    main()
