"""Scenario `scale`, its history part (issue 19, "Show it"): what a daemon, a sensor tick, the asset
checks and the nightly plan cost against a large Dagster instance and an analytics database holding
1, 3 and 10 years of history. Goal: flat in history (and the daemon under 1.5 GiB).

The state (one scratch Postgres database for Dagster, one for the analytics tables):

1. Dagster: `symbols` synthetic symbols + the factor ETFs registered as `symbol` partitions and
   `portfolios` portfolios as `portfolio` partitions; the symbol layer's three day assets (`prices`,
   `symbol_factor_exposures`, `symbol_metrics`) materialized for the `window` sessions before the
   latest closed one (scale.build_state: one genuine no-op run, its events COPY'd per key) -- the
   2-month partition window at its largest (42 sessions: 210k keys per asset at 5,000 symbols), the
   latest session not yet run (what the nightly finds missing).
2. Analytics (factor_platform's schema): `prices` of every symbol and ETF, `symbol_factor_exposures`
   (all 12 factors in the last `window` + 1 sessions, `market_beta` alone before: 12 factors x 10 years
   would be 151M rows), `portfolios` (inception = the history's first session) with 20 public positions
   each, `portfolio_snapshots` of every portfolio through the session before the latest (so the sensor
   has one session to catch up), 10 open `price_break` findings; grown backwards 1 -> 3 -> 10 years
   (INSERT ... SELECT from unnest, server-side; history key by key, the window's sessions date by
   date, as history runs and nightlies write them), VACUUM ANALYZE after each. `symbol_metrics` and the
   other portfolio tables stay empty: nothing measured here reads them.
3. The measuring processes run the production configuration: FACTOR_PLATFORM_PARTITION_MONTHS=2,
   FACTOR_PLATFORM_START_DATE = the 10-year history's first session. The event log's sessions before
   this month's window start are what the 17:00 archive would turn into spans at a month's end.

Per history (a fresh process each: `mode: measure`):
(b) the portfolio sensor's tick, `portfolio_sensor.evaluate_tick(build_sensor_context(...))`: first
    call (the database's schema check included) and the median of 5 more, in the catch-up state (every
    portfolio one session behind: one run request each) and idle (snapshots current: no request);
(c) every asset check of factor_platform.defs (direct invocation, median of 5) and the nightly
    schedule's tick (`nightly_schedule.evaluate_tick` at 18:00 New York of the latest session:
    read_state + plan, each timed by wrapping the schedule module's reference).
(a) after the largest history: `dagster-daemon run -m factor_platform.definitions` on the instance
    (runs queue, none launched: run_queue.max_concurrent_runs 0), twice: phase 1 from a fresh daemon
    (its sensor ticks request the 500 catch-up runs, which the daemon creates), then phase 2 after the
    nightly schedule's state is moved back before the latest session's 18:00 (the daemon catches that
    tick up: one run over the latest session x every symbol); the daemon's and its code server's peak
    RSS (VmHWM) and CPU, the ticks' durations from Dagster's tick records.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    MINIMAL_DAGSTER_YAML,
    PLATFORM_DAGSTER_ENV,
    REPO,
    bench_line,
    dagster_home,
    emit,
    log,
    plain_pg_url,
    quiet_warnings,
    run_worker,
    scratch_postgres,
    worker_args,
)

YEARS = (1, 3, 10)
SESSIONS_PER_YEAR = 252
PARTITION_MONTHS = 2
POSITIONS_PER_PORTFOLIO = 20
FINDINGS = 10  # open price_break warnings (explained_price_breaks lists them)
REPEATS = 5
DAEMON_YAML = MINIMAL_DAGSTER_YAML + "run_queue:\n  max_concurrent_runs: 0\n"
# (symbols, portfolios, window sessions): the 210k window of 5,000 symbols; --quick
SIZES = {"210k": (5_000, 500, 42), "quick": (100, 10, 20)}


# ------------------------------------------------------------------------------------- the scenario


def scenario(*, quick: bool, report: Callable[[str], None], measure: bool = True, daemon: bool = True) -> None:
    """scale.py's parts `history` (`measure`: sensor tick, checks, nightly plan at each history) and
    `daemon`: one worker, its bench lines (the goal "flat in history" as the 1-year figure for
    baseline: ratio ~1 flat, ratio 0.3 a tenfold history costing three times as much)."""
    label = "quick" if quick else "210k"
    symbols, portfolios, window = SIZES[label]
    args = {"symbols": symbols, "portfolios": portfolios, "window": window, "quick": quick}
    (r,) = run_worker("scale_history.py", {"mode": "history", **args, "measure": measure, "daemon": daemon})
    if measure:
        report_histories(r, label, report)
    if daemon:
        report_daemon(r, label, report)


def report_histories(r: dict, label: str, report: Callable[[str], None]) -> None:
    base = r["histories"][0]
    at = f"at_{base['years']}y"

    def line(name: str, now: dict, then: dict, key: str) -> str:
        """seconds against the 1-year figure, and the pages Postgres read for one call (EXPLAIN's buffers)."""
        reads = now.get(key + "_reads") or (now if "pages" in now else {})
        reads_then = then.get(key + "_reads") or (then if "pages" in then else {})
        seconds = now[key + "_seconds"] if key + "_seconds" in now else now["seconds"]
        seconds_then = then[key + "_seconds"] if key + "_seconds" in then else then["seconds"]
        return bench_line(name, seconds, at, seconds_then) + (
            f" pages={reads.get('pages', 0)} pages_{at}={reads_then.get('pages', 0)}" if reads else ""
        )

    for h in r["histories"]:
        y = h["years"]
        report(line(f"scale_sensor_tick_{label}_{y}y", h, base, "sensor_catch_up"))
        report(line(f"scale_sensor_tick_idle_{label}_{y}y", h, base, "sensor_idle"))
        report(line(f"scale_nightly_plan_{label}_{y}y", h, base, "nightly"))
        report(bench_line(f"scale_checks_{label}_{y}y", h["checks_seconds"], at, base["checks_seconds"]))
        for check, c in h["checks"].items():
            report(line(f"scale_check_{check}_{label}_{y}y", c, base["checks"][check], "check"))
    print_state(r, label)
    for h in r["histories"]:
        rows = h["rows"]
        print(
            f"  scale history[{label}] {h['years']}y (from {rows['first_session']}): prices {rows['prices']:,} rows "
            f"({rows['prices_mb']:,} MB), symbol_factor_exposures {rows['symbol_factor_exposures']:,} ({rows['symbol_factor_exposures_mb']:,} MB), "
            f"portfolio_snapshots {rows['portfolio_snapshots']:,} ({rows['portfolio_snapshots_mb']:,} MB); built in {h['build_seconds']:.0f} s"
        )
        print(
            f"    sensor tick, catch-up ({h['sensor_catch_up_result']} run requests): {h['sensor_catch_up_seconds']:.3f} s "
            f"(CPU {h['sensor_catch_up_cpu']:.3f}; min {h['sensor_catch_up_min_seconds']:.3f}; first {h['sensor_catch_up_first_seconds']:.3f}); idle ({h['sensor_idle_result']}): "
            f"{h['sensor_idle_seconds']:.3f} s (CPU {h['sensor_idle_cpu']:.3f}; min {h['sensor_idle_min_seconds']:.3f}; first {h['sensor_idle_first_seconds']:.3f})"
        )
        print(
            "    checks (median wall / min wall / CPU s, pages, scans): "
            + "; ".join(
                f"{k} {c['seconds']:.3f} / {c['min']:.3f} / {c['cpu']:.3f}, {c['pages']} pages, {scans(c)}"
                for k, c in h["checks"].items()
            )
            + f"; all {h['checks_seconds']:.3f} / {h['checks_cpu']:.3f}"
        )
        for key in ("sensor_catch_up", "sensor_idle", "nightly"):
            reads = h[key + "_reads"]
            print(f"    {key} reads: {reads['statements']} statements, {reads['pages']} pages, {scans(reads)}")
        print(
            f"    nightly tick ({h['nightly_result']} run request {h['nightly_request']}): {h['nightly_seconds']:.3f} s "
            f"(CPU {h['nightly_cpu']:.3f}; min {h['nightly_min_seconds']:.3f}; first {h['nightly_first_seconds']:.3f}): read_state {h['read_state_seconds']:.3f} s, "
            f"plan {h['plan_seconds']:.3f} s; load {' '.join(f'{x:.1f}' for x in h['load'])}"
        )


def report_daemon(r: dict, label: str, report: Callable[[str], None]) -> None:
    d = r["daemon"]
    gib = max(d["phase1"]["daemon_hwm_gib"], d["phase2"]["daemon_hwm_gib"])
    code = max([c["hwm_gib"] for p in ("phase1", "phase2") for c in d[p]["children"]] or [float("nan")])
    report(
        bench_line(f"scale_daemon_rss_{label}", gib, "goal_1.5GiB", 1.5)
        + f" rss_gib={gib:.3f} code_server_gib={code:.3f}"
    )

    if not r["histories"]:
        print_state(r, label)
    for phase in ("phase1", "phase2"):
        p = d[phase]
        kids = "; ".join(f"{c['cmd']}: {c['hwm_gib']:.2f} GiB, CPU {c['cpu']:.1f} s" for c in p["children"])
        print(
            f"  scale history[{label}] daemon {phase}: {p['runs']} runs created, work {p['work_seconds'] or float('nan'):.0f} s of "
            f"{p['seconds']:.0f} s; dagster-daemon peak RSS {p['daemon_hwm_gib']:.2f} GiB, CPU {p['daemon_cpu']:.1f} s; children: {kids}"
        )
    ticks = d["sensor_tick_seconds"]
    print(
        f"  scale history[{label}] daemon ticks: nightly_schedule {d['nightly_tick']}; portfolio_sensor {d['sensor_ticks']} ticks, "
        f"seconds {ticks[:3]} ... median {statistics.median(ticks) if ticks else float('nan'):.2f}, max {max(ticks, default=float('nan')):.2f}, "
        f"runs per tick {[n for n in d['sensor_tick_runs'] if n]}; load at the end {' '.join(f'{x:.1f}' for x in r['load_after'])}"
    )


def print_state(r: dict, label: str) -> None:
    keys = r["dagster_keys_per_asset"]
    print(
        f"  scale history[{label}]: Dagster: {keys:,} materialized keys per symbol-day asset x 3 ({r['symbols']:,} symbols + ETFs x "
        f"{r['window']} sessions {r['dagster_first']}..{r['dagster_last']}; latest session {r['latest']} not run), "
        f"{r['portfolios']} portfolios registered; built in {r['dagster_build_seconds']:.0f} s; measured with "
        f"FACTOR_PLATFORM_PARTITION_MONTHS={PARTITION_MONTHS}"
    )


def scans(reads: dict) -> str:
    return ", ".join(f"{n} x {scan}" for scan, n in sorted(reads["scans"].items())) or "no table read"


# ------------------------------------------------------------------------------------- the worker


def history(args: dict) -> dict:
    """Build the Dagster state and the analytics database, measure at each history, then the daemon."""
    n_symbols, n_portfolios, window = args["symbols"], args["portfolios"], args["window"]
    years = args.get("years", list(YEARS))
    os.environ.update(PLATFORM_DAGSTER_ENV)
    from factor_platform.domain import sessions

    latest = sessions.latest_closed_session()
    all_days = days_before(latest, max(years) * SESSIONS_PER_YEAR)
    dagster_days = all_days[-window - 1 : -1]  # the window's sessions before the latest
    # the Dagster state is built with the dates exactly those sessions (as scale.py's sizes)
    os.environ["FACTOR_PLATFORM_PARTITION_MONTHS"] = "0"
    os.environ["FACTOR_PLATFORM_START_DATE"] = dagster_days[0].isoformat()
    measure_env = {
        "FACTOR_PLATFORM_PARTITION_MONTHS": str(PARTITION_MONTHS),
        "FACTOR_PLATFORM_START_DATE": all_days[0].isoformat(),
    }
    from scale import build_state, symbol_names

    from factor_platform.planning.state import all_etfs

    names = symbol_names(n_symbols)
    symbols = names + all_etfs()
    portfolios = [f"P{i:04d}" for i in range(n_portfolios)]
    out: dict = {"symbols": n_symbols, "portfolios": n_portfolios, "window": window, "latest": latest.isoformat()}
    with (
        scratch_postgres("bench_scale_dagster") as url,
        scratch_postgres("bench_scale_analytics") as analytics_url,
        dagster_home(DAEMON_YAML.format(url=plain_pg_url(url))) as home,
    ):
        os.environ["DAGSTER_HOME"] = str(home)
        os.environ["FACTOR_PLATFORM_DB_URL"] = analytics_url
        quiet_warnings()
        import dagster as dg

        instance = dg.DagsterInstance.get()
        try:
            t = time.perf_counter()
            built = build_state(
                instance,
                url,
                dagster_days,
                symbols,
                symbols,
                assets=("prices", "symbol_factor_exposures", "symbol_metrics"),
            )
            instance.add_dynamic_partitions("portfolio", portfolios)
            out["dagster_build_seconds"] = time.perf_counter() - t
            out["dagster_keys_per_asset"] = len(dagster_days) * len(symbols)
            out["dagster_first"], out["dagster_last"] = dagster_days[0].isoformat(), dagster_days[-1].isoformat()
            log(f"  scale history: Dagster state built in {out['dagster_build_seconds']:.0f} s ({built})")
        finally:
            instance.dispose()

        analytics = AnalyticsBuilder(analytics_url, names, all_etfs(), portfolios, all_days, window)
        out["histories"] = []
        # without the measures (the daemon alone), straight to the longest history
        for y in sorted(years) if args.get("measure", True) else [max(years)]:
            t = time.perf_counter()
            rows = analytics.grow(y * SESSIONS_PER_YEAR)
            built = time.perf_counter() - t
            log(f"  scale history: analytics at {y} year(s) in {built:.0f} s: {rows}")
            if args.get("measure", True):
                (r,) = run_worker(
                    "scale_history.py", {"mode": "measure", "years": y, "latest": latest.isoformat()}, env=measure_env
                )
                out["histories"].append({"years": y, "build_seconds": built, "rows": rows, **r})
        os.environ.update(measure_env)
        if args.get("daemon", True):
            out["daemon"] = daemon(home, latest, quick=args.get("quick", False))
        out["load_after"] = list(os.getloadavg())
    return out


def days_before(latest: dt.date, n: int) -> list[dt.date]:
    from factor_platform.domain import sessions

    first = sessions.sessions_before(latest, n - 1)
    days = [d.date() for d in sessions.sessions_in_range(first, latest)]
    assert len(days) == n, (len(days), n)
    return days


class AnalyticsBuilder:
    """The analytics tables of the simulation, grown backwards in history (rows generated by Postgres)."""

    FACTORS = (
        "market_beta",
        "ir_beta",
        "value",
        "growth",
        "momentum",
        "quality",
        "size",
        "low_vol",
        "growth_value_spread",
        "momentum_spread",
        "size_spread",
        "quality_spread",
    )

    def __init__(
        self, url: str, names: list[str], etfs: list[str], portfolios: list[str], all_days: list[dt.date], window: int
    ):
        from factor_platform.storage import Database

        Database(url).init_schema()  # the production schema: keys, indexes
        self.url, self.names, self.etfs, self.portfolios = plain_pg_url(url), names, etfs, portfolios
        self.all_days = all_days
        self.recent = all_days[-window - 1 :]  # the window's sessions and the latest: every factor
        self.have: list[dt.date] = []

    def grow(self, n_sessions: int) -> dict:
        import psycopg2

        days = self.all_days[-n_sessions:]
        new = [d for d in days if not self.have or d < self.have[0]]
        # in the order the platform writes them: history by key (a history run's rectangle), the
        # window session by session (the nightlies), after it -- the date index then finds the
        # window's rows on the heap's last pages, as in production
        older = [d for d in new if d < self.recent[0]]
        recent = [d for d in new if d >= self.recent[0]]
        history_start = days[0]
        conn = psycopg2.connect(self.url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SET synchronous_commit = off")
                books = not self.have
                if books:
                    self._books(cur, history_start)
                else:  # the books begin with the longer history
                    cur.execute("UPDATE portfolios SET inception_date = %s", (history_start,))
                    cur.execute("UPDATE positions SET entry_date = %s", (history_start,))
                for dates, order, factors in ((older, "k, d", ["market_beta"]), (recent, "d, k", list(self.FACTORS))):
                    if not dates:
                        continue
                    cur.execute(
                        "INSERT INTO prices (symbol, date, open, high, low, close, adj_close, volume, source) "
                        "SELECT k, d, 100 + i %% 50, 101 + i %% 50, 99 + i %% 50, 100 + i %% 50, 99.5 + i %% 50, "
                        "1000000 + i, 'bench' FROM unnest(%s::text[]) WITH ORDINALITY AS a(k, i) "
                        f"CROSS JOIN unnest(%s::date[]) AS d ORDER BY {order}",
                        (self.names + self.etfs, dates),
                    )
                    cur.execute(
                        "INSERT INTO symbol_factor_exposures "
                        "(symbol, date, factor, beta, alpha, r_squared, std_error, p_value, n_obs, method) "
                        "SELECT k, d, f, 1.0, 0.0001, 0.4, 0.05, 0.01, 90, 'ols' FROM unnest(%s::text[]) AS k "
                        f"CROSS JOIN unnest(%s::date[]) AS d CROSS JOIN unnest(%s::text[]) AS f ORDER BY {order}, f",
                        (self.names, dates, factors),
                    )
                    cur.execute(
                        "INSERT INTO portfolio_snapshots (portfolio_id, date, equity, cash, long_exposure, short_exposure, "
                        "gross_exposure, net_exposure, daily_pnl, daily_return, cumulative_pnl, n_positions, is_complete) "
                        "SELECT k, d, 1000000, 100000, 800000, -100000, 900000, 700000, 100, 0.0001, 1000, %s, true "
                        f"FROM unnest(%s::text[]) AS k CROSS JOIN unnest(%s::date[]) AS d ORDER BY {order}",
                        # through the session before the latest (the sensor's catch-up)
                        (POSITIONS_PER_PORTFOLIO, self.portfolios, [d for d in dates if d < self.all_days[-1]]),
                    )
            conn.autocommit = True
            with conn.cursor() as cur:
                for table in ("prices", "symbol_factor_exposures", "portfolio_snapshots", "portfolios", "positions"):
                    cur.execute(f"VACUUM ANALYZE {table}")
                rows = {}
                for table in ("prices", "symbol_factor_exposures", "portfolio_snapshots", "positions"):
                    cur.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
                    count, size = cur.fetchone()
                    rows[table] = count
                    rows[table + "_mb"] = round(size / 1e6)
        finally:
            conn.close()
        self.have = days
        rows["first_session"] = days[0].isoformat()
        return rows

    def _books(self, cur, start: dt.date) -> None:
        cur.execute(
            "INSERT INTO portfolios (portfolio_id, name, starting_equity, inception_date, book_version) "
            "SELECT p, 'bench ' || p, 1000000, %s, 1 FROM unnest(%s::text[]) AS p",
            (start, self.portfolios),
        )
        names = self.names
        rows = []
        for i, pid in enumerate(self.portfolios):
            for j in range(POSITIONS_PER_PORTFOLIO):
                symbol = names[(i * 37 + j * 251) % len(names)]
                kind = "SHORT" if j % 4 == 3 else "LONG"
                rows.append((f"{pid}:{j + 1}", pid, symbol, kind, "PUBLIC", 100.0, 50.0, start))
        cur.executemany(
            "INSERT INTO positions (position_id, portfolio_id, symbol, position_type, investment_class, quantity, "
            "entry_price, entry_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
        cur.execute(
            "INSERT INTO symbol_failures (symbol, stage, date, error, status) "
            "SELECT s, 'price_break', %s, s || ': a daily move of +55 %% without a corporate action', 'open' "
            "FROM unnest(%s::text[]) AS s",
            (self.all_days[-1], names[:FINDINGS]),
        )


# ------------------------------------------------------------------------------------- (b), (c)


def measure(args: dict) -> dict:
    """One history: the sensor tick (catch-up and idle), every asset check, the nightly schedule's tick."""
    quiet_warnings()
    import dagster as dg
    import psycopg2

    from factor_platform.defs.portfolios import checks as portfolio_checks
    from factor_platform.defs.portfolios.sensors import portfolio_sensor
    from factor_platform.defs.resources import AnalyticsDatabase
    from factor_platform.defs.symbols import checks as symbol_checks

    latest = dt.date.fromisoformat(args["latest"])
    url = os.environ["FACTOR_PLATFORM_DB_URL"]
    resources = {"analytics_db": AnalyticsDatabase(url=url)}
    statements = Statements(resources["analytics_db"].get().engine)

    def reads(call) -> dict:
        """What one more call reads in the analytics database (EXPLAIN's buffers, the scans)."""
        with statements.record():
            call()
        return statements.explain()

    instance = dg.DagsterInstance.get()
    out: dict = {}
    try:
        # (b) the sensor: every portfolio one session behind, then current
        def tick() -> int:
            context = dg.build_sensor_context(instance=instance, resources=resources)
            return len(portfolio_sensor.evaluate_tick(context).run_requests or [])

        out.update(timed("sensor_catch_up", tick))
        out["sensor_catch_up_reads"] = reads(tick)
        conn = psycopg2.connect(plain_pg_url(url))
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO portfolio_snapshots (portfolio_id, date, equity, n_positions, is_complete) "
                    "SELECT portfolio_id, %s, 1000000, %s, true FROM portfolios",
                    (latest, POSITIONS_PER_PORTFOLIO),
                )
            out.update(timed("sensor_idle", tick))
            out["sensor_idle_reads"] = reads(tick)
            with conn, conn.cursor() as cur:  # back to one session behind (the next history, the daemon)
                cur.execute("DELETE FROM portfolio_snapshots WHERE date = %s", (latest,))
        finally:
            conn.close()
        log(
            f"  scale history {args['years']}y: sensor tick catch-up {out['sensor_catch_up_seconds']:.2f} s "
            f"({out['sensor_catch_up_result']} requests), idle {out['sensor_idle_seconds']:.2f} s"
        )

        # (c) every asset check of the definitions, directly invoked
        checks = {
            name: value
            for module in (symbol_checks, portfolio_checks)
            for name, value in vars(module).items()
            if isinstance(value, dg.AssetChecksDefinition)
        }
        out["checks"] = {}
        for name, check in sorted(checks.items()):
            r = timed("check", lambda check=check: check(**resources).passed)
            out["checks"][name] = {
                "seconds": r["check_seconds"],
                "cpu": r["check_cpu"],
                "first": r["check_first_seconds"],
                "min": r["check_min_seconds"],
                "passed": r["check_result"],
                **reads(lambda check=check: check(**resources)),
            }
        out["checks_seconds"] = sum(c["seconds"] for c in out["checks"].values())
        out["checks_cpu"] = sum(c["cpu"] for c in out["checks"].values())
        log(
            f"  scale history {args['years']}y: checks "
            + ", ".join(f"{k} {v['seconds']:.3f}" for k, v in out["checks"].items())
        )

        # (c) the nightly schedule's tick: read_state + plan
        out.update(nightly(instance, resources, latest, reads))
        log(
            f"  scale history {args['years']}y: nightly tick {out['nightly_seconds']:.2f} s "
            f"(read_state {out['read_state_seconds']:.2f} s, plan {out['plan_seconds']:.2f} s)"
        )
    finally:
        instance.dispose()
    out["load"] = list(os.getloadavg())
    return out


def timed(name: str, call) -> dict:
    """The first call (cold), then the median of REPEATS calls: wall and this process's CPU."""
    t, cpu = time.perf_counter(), time.process_time()
    call()
    first = time.perf_counter() - t
    walls, cpus, result = [], [], None
    for _ in range(REPEATS):
        t, cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - cpu)
    return {
        f"{name}_first_seconds": first,
        f"{name}_seconds": statistics.median(walls),
        f"{name}_cpu": statistics.median(cpus),
        f"{name}_min_seconds": min(walls),
        f"{name}_result": result,
    }


class Statements:
    """The SELECTs an analytics Database runs while recording, and what Postgres reads for them:
    EXPLAIN (ANALYZE, BUFFERS) of each afterwards -- shared buffers hit + read (8 KiB pages), a count
    of what a call touches that the machine's load does not change -- and its scans."""

    def __init__(self, engine):
        import sqlalchemy as sa

        self.engine, self.recording, self.seen = engine, False, []
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if self.recording and not executemany and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            self.seen.append((statement, parameters))

    @contextlib.contextmanager
    def record(self):
        self.seen, self.recording = [], True
        try:
            yield
        finally:
            self.recording = False

    def explain(self) -> dict:
        """{"pages": buffers of all statements, "scans": {"Seq Scan on prices": n, ...}, "statements": n}"""
        pages, scans = 0, {}
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, parameters in self.seen:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
                (plan,) = cur.fetchone()[0]
                top = plan["Plan"]
                pages += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
                for node in walk(top):
                    if "Relation Name" in node:
                        name = f"{node['Node Type']} on {node['Relation Name']}"
                        scans[name] = scans.get(name, 0) + 1
            raw.rollback()
        finally:
            raw.close()
        return {"pages": pages, "scans": scans, "statements": len(self.seen)}


def walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def nightly(instance, resources: dict, latest: dt.date, reads) -> dict:
    """The nightly schedule's tick for the latest session, read_state and plan timed inside it."""
    import zoneinfo

    import dagster as dg

    from factor_platform.defs import schedules

    spent = {"read_state": [], "plan": []}

    def timing(name, function):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - t)

        return wrapper

    at = dt.datetime.combine(latest, dt.time(18, 0), zoneinfo.ZoneInfo("America/New_York"))
    requests = []

    def tick() -> int:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at, resources=resources)
        data = schedules.nightly_schedule.evaluate_tick(context)
        requests[:] = data.run_requests or []
        return len(requests)

    original = schedules.read_state, schedules.plan
    schedules.read_state, schedules.plan = timing("read_state", original[0]), timing("plan", original[1])
    try:
        r = timed("nightly", tick)
    finally:
        schedules.read_state, schedules.plan = original
    (request,) = requests  # one run: the latest session x every symbol
    return {
        **r,
        "nightly_reads": reads(tick),
        "read_state_seconds": statistics.median(spent["read_state"][1:]),
        "plan_seconds": statistics.median(spent["plan"][1:]),
        "nightly_request": dict(request.tags),
    }


# ------------------------------------------------------------------------------------- (a) daemon


def daemon(home: Path, latest: dt.date, *, quick: bool) -> dict:
    """dagster-daemon on the instance, two phases (sensor catch-up; the nightly's tick caught up)."""
    import zoneinfo

    import dagster as dg
    from dagster._core.scheduler.instigation import InstigatorType, ScheduleInstigatorData, TickStatus

    out: dict = {}
    instance = dg.DagsterInstance.get()
    try:
        settle = 20 if quick else 45  # seconds of idle ticks after the phase's work

        def runs() -> int:
            return instance.get_runs_count()

        def sensor_runs_done() -> bool:
            """The sensor's catch-up tick is over: a finished tick that requested runs."""
            for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
                if state.instigator_name == "portfolio_sensor":
                    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=20)
                    if any(t.status == TickStatus.SUCCESS and t.run_ids for t in ticks):
                        return True
            return False

        out["phase1"] = run_daemon(home, "phase1", sensor_runs_done, settle, timeout=900)
        out["phase1"]["runs"] = runs() - 1
        (state,) = [
            s
            for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
            if s.instigator_name == "nightly_schedule"
        ]
        before = dt.datetime.combine(latest, dt.time(17, 59), zoneinfo.ZoneInfo("America/New_York")).timestamp()
        instance.update_instigator_state(
            state.with_data(ScheduleInstigatorData(state.instigator_data.cron_schedule, start_timestamp=before))
        )
        before_runs = runs()

        def nightly_ticked() -> bool:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            return bool(ticks) and ticks[0].status != TickStatus.STARTED

        out["phase2"] = run_daemon(home, "phase2", nightly_ticked, settle, timeout=900)
        out["phase2"]["runs"] = runs() - before_runs
        (tick,) = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
        out["nightly_tick"] = {"status": tick.status.value, "runs": len(tick.run_ids)}
        sensor_states = [
            s
            for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
            if s.instigator_name == "portfolio_sensor"
        ]
        durations = []
        for s in sensor_states:
            for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=500):
                if t.end_timestamp:
                    durations.append((t.timestamp, t.end_timestamp - t.timestamp, t.status.value, len(t.run_ids)))
        durations.sort()
        out["sensor_ticks"] = len(durations)
        out["sensor_tick_seconds"] = [round(d, 3) for _, d, _, _ in durations]
        out["sensor_tick_runs"] = [n for _, _, _, n in durations]
    finally:
        instance.dispose()
    return out


def run_daemon(home: Path, phase: str, done, settle: float, timeout: float) -> dict:
    """Start dagster-daemon, sample the RSS of it and its children until `done()` and `settle` s more, stop it."""
    log_file = open(home / f"daemon_{phase}.log", "w")  # noqa: SIM115 -- closed in finally
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "factor_platform.definitions"],
        cwd=REPO,
        env=dict(os.environ),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    sampler = Sampler(proc.pid)
    sampler.start()
    finished_at = None
    try:
        while time.perf_counter() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited {proc.returncode}:\n{tail(home / f'daemon_{phase}.log')}")
            if finished_at is None and done():
                finished_at = time.perf_counter()
                log(
                    f"  scale history daemon {phase}: work done after {finished_at - started:.0f} s; {settle:.0f} s of idle ticks"
                )
            if finished_at is not None and time.perf_counter() - finished_at >= settle:
                break
            time.sleep(1)
        else:
            log(f"  scale history daemon {phase}: WARNING not done after {timeout:.0f} s")
    finally:
        sampler.stop()
        stop_tree(proc)
        log_file.close()
    return {
        "seconds": time.perf_counter() - started,
        "work_seconds": None if finished_at is None else finished_at - started,
        **sampler.result(),
    }


class Sampler(threading.Thread):
    """Every 0.5 s: VmHWM and CPU of the daemon and of each child process (its code server)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.running = pid, True
        self.hwm: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.children_seen: list[int] = []

    def run(self) -> None:
        from scale import children

        while self.running:
            pids = [self.pid]
            with contextlib.suppress(OSError):
                for child in children(self.pid):
                    pids.append(child)
                    if child not in self.children_seen:
                        self.children_seen.append(child)
            for pid in pids:
                self.sample(pid)
            time.sleep(0.5)

    def sample(self, pid: int) -> None:
        from scale import proc_cpu_seconds, proc_status_gib

        try:
            hwm = proc_status_gib(pid, "VmHWM")  # NaN once gone; a zombie has no VmHWM (ValueError)
            if hwm == hwm:
                self.hwm[pid] = max(self.hwm.get(pid, 0.0), hwm)
                self.cpu[pid] = proc_cpu_seconds(pid)
                self.names.setdefault(pid, " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0")[1:4]))
        except (OSError, ValueError, IndexError):
            pass

    def stop(self) -> None:
        for pid in [self.pid, *self.children_seen]:
            self.sample(pid)
        self.running = False
        self.join(5)

    def result(self) -> dict:
        kids = [p for p in self.hwm if p != self.pid]
        return {
            "daemon_hwm_gib": self.hwm.get(self.pid, float("nan")),
            "daemon_cpu": self.cpu.get(self.pid, float("nan")),
            "children": [
                {"cmd": self.names.get(p, ""), "hwm_gib": self.hwm[p], "cpu": self.cpu.get(p, float("nan"))}
                for p in kids
            ],
        }


def stop_tree(proc: subprocess.Popen) -> None:
    """Stop the daemon we started (SIGTERM, then SIGKILL), then any code server of it still alive
    (its children when we stopped it, by pid and only while the pid still runs the same command)."""
    from scale import children

    def command(pid: int) -> bytes | None:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None

    kids = {pid: command(pid) for pid in children(proc.pid)} if proc.poll() is None else {}
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    deadline = time.monotonic() + 15
    for pid, cmd in kids.items():
        while cmd and command(pid) == cmd and time.monotonic() < deadline:
            time.sleep(0.5)
        if cmd and command(pid) == cmd:
            with contextlib.suppress(OSError):
                os.kill(pid, 15)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""


def main() -> None:
    args = worker_args()
    if args.get("mode") == "measure":
        emit(measure(args))
    else:
        emit(history(args))


if __name__ == "__main__":
    main()
