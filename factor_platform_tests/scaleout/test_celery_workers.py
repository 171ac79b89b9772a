"""Scale-out: two Celery workers compute the symbol layer in chunks; the tables equal an in-process run.

The deployment of deploy/celery/ in miniature: a fresh DAGSTER_HOME whose dagster.yaml keeps
Dagster's runs and events in a new database on the machine's PostgreSQL, a new analytics database,
the `sample` source, and a queue of the test's own on the machine's Redis. Two workers started by
the deployment's own command (deploy/celery/worker: `celery -A dagster_celery.app worker`, one slot
each, settings from deploy/celery/dagster_celery_config.py) serve it. The same range — six stocks and the eight factor
ETFs over 20 sessions — is then materialized twice:

1. in this process (`factor_platform.running.execution.materialize`) into a second analytics database and
   a second Dagster instance, while the workers boot;
2. through `factor_platform.running.celery_workers`, cut into two symbol chunks: every step is a Celery task, and
   Dagster's event log must show steps executed by *both* workers and every partition materialized.

`prices`, `symbol_factor_exposures` and `symbol_metrics` must be identical row by row. Skipped only
when Redis can neither be reached at 127.0.0.1:6379 nor started there.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from factor_platform.defs import partitions
from factor_platform.domain import sessions
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.names import SYMBOL_DAY_ASSETS
from factor_platform.planning import waves as chunking
from factor_platform.planning.planner import Plan, PlannedRun
from factor_platform.planning.rectangles import Rectangle
from factor_platform.running import celery_workers
from factor_platform.running.execution import materialize
from factor_platform.storage import Database
from factor_platform_tests.conftest import _admin_engine, _fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "deploy" / "celery" / "worker"  # the deployment's worker command
VENV = Path(sys.executable).parent.parent  # the venv running the tests
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_START = [  # how this machine runs its Redis: a shared service, started when down, never stopped
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    str(REDIS_PORT),
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]
STOCKS = ["AAPL", "MSFT", "NVDA", "JPM", "XOM", "KO"]
ETFS = factor_tickers(load_regressions())
START = dt.date(2024, 6, 3)
SESSIONS = 20
WORKERS = ("w1", "w2")
TABLES = ("prices", "symbol_factor_exposures", "symbol_metrics")
WORKER_READY_S = 75
STOP_S = 5

INSTANCE_YAML = 'storage:\n  postgres:\n    postgres_url: "{url}"\ntelemetry:\n  enabled: false\n'


def _redis_db() -> int:
    """A Redis database number for the test (Redis started when down); skip when Redis cannot be had."""
    import redis

    def ping() -> bool:
        try:
            return redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=2).ping()
        except redis.RedisError:
            return False

    if not ping() and shutil.which("redis-server"):
        subprocess.run(REDIS_START, capture_output=True, timeout=20)
        for _ in range(20):
            if ping():
                break
            time.sleep(0.25)
    if not ping():
        pytest.skip(
            f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT} and could not be started "
            f"({' '.join(REDIS_START)}): the Celery workers need it as their broker"
        )
    # Other tests may share the database: isolation comes from the queue, named for this test only.
    return random.randint(1, 15)


def _forget_queue(broker: str, queue: str) -> None:
    """Delete what the test left on the shared Redis: its queue (empty by now) and Kombu's binding of it."""
    import redis

    redis.Redis.from_url(broker).delete(queue, f"_kombu.binding.{queue}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _instance(url: str, home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML.format(url=url))
    return dg.DagsterInstance.from_config(str(home))


def _database_copy(template_url: str, name: str):
    """A copy of the template database (a schema without migrating it again), dropped afterwards."""
    return _fresh_postgres_database(name, template=sa.make_url(template_url).database)


class _Workers:
    """Workers started by deploy/celery/worker (one slot each), each in a process group of its own
    (its pool child included); stop() ends exactly those groups."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, env: dict[str, str]) -> None:
        with open(self.logs / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                ["bash", str(WORKER), name],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, deadline: float) -> None:
        """Until every worker logs that it is ready (it consumes the queue, definitions loaded).

        Read from the logs, not by a broadcast over the broker: a broker connection in this process
        would be inherited by the orchestrating processes `celery_workers` forks.
        """
        waiting = set(self.procs)
        while waiting and time.monotonic() < deadline:
            for name in sorted(waiting):
                proc, log = self.procs[name], self.logs / f"{name}.log"
                if proc.poll() is not None:
                    pytest.fail(f"worker {name} exited with {proc.returncode}:\n{_tail(log)}")
                if re.search(rf"\b{name}@\S+ ready\.", log.read_text(errors="replace")):
                    waiting.discard(name)
            time.sleep(0.25)
        if waiting:
            pytest.fail(
                f"workers {sorted(waiting)} not ready after {WORKER_READY_S} s:\n"
                + "\n".join(_tail(self.logs / f"{n}.log") for n in sorted(waiting))
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, to each worker's process group; idempotent (a stopped group is forgotten)."""
        for sig, wait in ((signal.SIGTERM, STOP_S), (signal.SIGKILL, 5)):
            alive = []
            for proc in self.procs.values():
                proc.poll()  # reap the leader, so a finished group reads as gone
                try:
                    os.killpg(proc.pid, sig)
                    alive.append(proc.pid)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while alive and time.monotonic() < deadline:
                time.sleep(0.2)
                for proc in self.procs.values():
                    proc.poll()
                alive = [pgid for pgid in alive if _group_alive(pgid)]
            if not alive:
                break
        for proc in self.procs.values():
            proc.wait(timeout=5)
        self.procs.clear()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _covered(runs: list[PlannedRun]) -> list[tuple]:
    """Every (asset, first session, key) a list of runs covers, once per run that covers it."""
    out = []
    for run in runs:
        keys = run.rectangle.keys if run.rectangle else run.keys
        out += [(a, run.rectangle.first if run.rectangle else None, k) for a in run.assets for k in keys]
    return sorted(out, key=str)


def test_chunks_are_contiguous_blocks_that_cover_the_rectangle_once():
    rect = Rectangle(dt.date(2024, 6, 3), dt.date(2024, 6, 28), tuple(STOCKS + ETFS))
    run = PlannedRun("symbol_layer_job", tuple(SYMBOL_DAY_ASSETS), rect)
    for chunks in (1, 2, 3, 5, 14, 40):
        parts = chunking.chunk_run(run, chunks)
        assert len(parts) == min(chunks, len(rect.keys))
        assert [k for p in parts for k in p.rectangle.keys] == list(rect.keys)  # contiguous, in order, once
        assert {(p.rectangle.first, p.rectangle.last, p.assets) for p in parts} == {(rect.first, rect.last, run.assets)}
        sizes = [len(p.rectangle.keys) for p in parts]
        assert max(sizes) - min(sizes) <= 1
        assert parts[0].tags()["dagster/asset_partition_range_start"] == f"2024-06-03|{rect.keys[0]}"
    with pytest.raises(ValueError, match="chunks must be >= 1"):
        chunking.chunk_run(run, 0)


def test_waves_write_every_price_before_any_beta_reads_it_and_portfolios_last():
    rect = Rectangle(dt.date(2024, 6, 3), dt.date(2024, 6, 28), tuple(STOCKS + ETFS))
    late = Rectangle(dt.date(2024, 6, 24), dt.date(2024, 6, 28), ("AAPL",))
    plan = Plan(
        symbol_runs=[
            PlannedRun("symbol_layer_job", tuple(SYMBOL_DAY_ASSETS), rect),
            PlannedRun("symbol_layer_job", ("symbol_metrics",), late),
        ],
        reference_runs=[PlannedRun("reference_data_job", ("company_profiles", "fundamentals"), keys=tuple(STOCKS))],
        portfolio_runs=[
            PlannedRun(
                "portfolio_layer_job",
                ("position_values", "portfolio_snapshots"),
                Rectangle(rect.first, rect.last, ("p1", "p2", "p3")),
            )
        ],
    )
    fetch, derived, portfolios = chunking.waves(plan, 2)
    assert {a for r in fetch for a in r.assets} == {"prices", "company_profiles", "fundamentals"}
    assert {a for r in derived for a in r.assets} == {"symbol_factor_exposures", "symbol_metrics"}
    assert {r.job_name for r in portfolios} == {"portfolio_layer_job"} and len(portfolios) == 2
    # Chunking neither loses nor repeats a partition.
    assert _covered(fetch + derived + portfolios) == _covered(plan.runs)


@pytest.mark.slow
def test_without_a_worker_on_the_queue_nothing_is_submitted(tmp_path, monkeypatch):
    broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{_redis_db()}"
    nobody = celery_workers.CeleryConfig(broker=broker, queue=f"fp_test_{uuid.uuid4().hex[:12]}")
    down = celery_workers.CeleryConfig(broker="redis://127.0.0.1:1/0", queue=nobody.queue)  # port 1: refused at once
    rect = Rectangle(dt.date(2024, 6, 3), dt.date(2024, 6, 28), ("AAPL", "SPY"))
    plan = Plan([PlannedRun("symbol_layer_job", tuple(SYMBOL_DAY_ASSETS), rect)], [], [])
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        for celery, reason in ((nobody, "no Celery worker consumes queue"), (down, "is unreachable")):
            done = celery_workers.execute_plan_on_celery(
                plan, instance=instance, workers=2, calendar="XNYS", progress=None, celery=celery
            )
            assert (done.partitions, done.run_ids, done.runs) == (0, [], 4)
            assert len(done.failures) == 4 and all(reason in f for f in done.failures), done.failures
        assert instance.get_runs() == []


@pytest.mark.slow
@pytest.mark.postgres
def test_two_celery_workers_compute_the_same_tables_as_one_process(tmp_path, monkeypatch):
    began = time.monotonic()
    redis_db = _redis_db()
    days = [d.date() for d in sessions.sessions_in_range(START, START + dt.timedelta(days=40))][:SESSIONS]
    end = days[-1]
    broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"
    queue = f"fp_test_{uuid.uuid4().hex[:12]}"
    celery = celery_workers.CeleryConfig(broker=broker, backend=broker, queue=queue)
    for name, value in {
        **celery.environment(),  # the run config names the broker by variable, so do the workers' settings
        "FACTOR_PLATFORM_PRICE_SOURCE": "sample",
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    }.items():
        monkeypatch.setenv(name, value)
    tag = uuid.uuid4().hex[:10]
    names = {db: f"fp_so_{db}_{tag}" for db in ("dagster", "analytics", "ref_dagster", "ref_analytics")}
    admin = _admin_engine()
    url = {db: admin.url.set(database=name).render_as_string(hide_password=False) for db, name in names.items()}
    admin.dispose()
    home = tmp_path / "dagster_home"
    workers = _Workers(tmp_path)
    env = {
        **os.environ,
        "FACTOR_PLATFORM_VENV": str(VENV),
        "FACTOR_PLATFORM_CELERY_CONCURRENCY": "1",
        "DAGSTER_HOME": str(home),
        "FACTOR_PLATFORM_DB_URL": url["analytics"],
        "FACTOR_PLATFORM_CALENDAR": partitions.CALENDAR,
        # the workers' date partitions must be this process's (read once, at import)
        "FACTOR_PLATFORM_START_DATE": partitions.START_DATE.isoformat(),
    }
    with ExitStack() as stack:
        stack.callback(_forget_queue, broker, queue)
        stack.callback(workers.stop)
        # The workers first: they boot (imports, definitions) while the databases are made; they
        # touch no database before their first step.
        for name in WORKERS:
            workers.start(name, env)
        stack.enter_context(_fresh_postgres_database(names["dagster"]))
        stack.enter_context(_fresh_postgres_database(names["analytics"]))
        stack.enter_context(_fresh_postgres_database(names["ref_analytics"]))
        # Dagster's schema, migrated once, then copied for the reference.
        _instance(url["dagster"], tmp_path / "template").dispose()
        stack.enter_context(_database_copy(url["dagster"], names["ref_dagster"]))
        stack.callback(workers.stop)  # again, so that the workers go before their databases are dropped
        instance = _instance(url["dagster"], home)
        stack.callback(instance.dispose)
        ref_instance = _instance(url["ref_dagster"], tmp_path / "ref_home")
        stack.callback(ref_instance.dispose)
        db, ref_db = Database(url["analytics"]), Database(url["ref_analytics"])
        stack.callback(db.dispose)
        stack.callback(ref_db.dispose)

        # 1. The reference, in this process, while the workers boot.
        monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", url["ref_analytics"])
        ref_db.init_schema()
        reference = materialize(ref_db, start=START, end=end, symbols=STOCKS, instance=ref_instance)
        assert reference["failures"] == []
        reference_s = time.monotonic() - began

        # 2. The same range through the workers, in two symbol chunks.
        monkeypatch.setenv("FACTOR_PLATFORM_DB_URL", url["analytics"])
        db.init_schema()
        workers.wait_ready(time.monotonic() + WORKER_READY_S)
        ready_s = time.monotonic() - began
        lines: list[str] = []
        outcome = materialize(
            db,
            start=START,
            end=end,
            instance=instance,
            symbols=STOCKS,
            executor="celery",
            workers=2,
            progress=lines.append,
        )
        celery_s = time.monotonic() - began - ready_s
        log = "\n".join(lines)
        assert outcome["failures"] == [], log
        symbol_day = SESSIONS * (len(STOCKS) + len(ETFS)) * len(SYMBOL_DAY_ASSETS)
        assert outcome["partitions"] == symbol_day + 2 * (len(STOCKS) + len(ETFS)), log  # + profiles, fundamentals

        # Both workers executed steps, as Dagster's own event log records it; no asset check ran.
        by_step = celery_workers.step_workers(instance, outcome["run_ids"])
        assert {node.split("@")[0] for node in by_step.values()} == set(WORKERS), f"{by_step}\n{log}"
        assert {step.split(":", 1)[1] for step in by_step} == {
            "prices",
            "symbol_analytics",  # symbol_factor_exposures + symbol_metrics: one step, one read of the prices
            "company_profiles",
            "fundamentals",
        }, by_step
        # Dagster knows every partition is materialized, exactly as after the in-process run.
        expected = {f"{d.isoformat()}|{s}" for d in days for s in STOCKS + ETFS}
        for asset in SYMBOL_DAY_ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == expected, asset
            assert ref_instance.get_materialized_partitions(dg.AssetKey(asset)) == expected, asset

        # The tables, row by row.
        for table in TABLES:
            distributed, local = db.read(table), ref_db.read(table)
            assert len(local) >= len(expected), table
            pd.testing.assert_frame_equal(distributed, local, check_exact=True, obj=table)
    print(
        f"reference in process {reference_s:.1f} s, workers ready at {ready_s:.1f} s, "
        f"celery run {celery_s:.1f} s, total {time.monotonic() - began:.1f} s"
    )
