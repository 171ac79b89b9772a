"""Shared plumbing of the benchmarks: scratch Postgres databases, a temp DAGSTER_HOME, the
worker protocol (a child process prints `BENCH_RESULT <json>` lines), and the output line.

Nothing here imports Dagster or factor_platform: a worker sets its environment first (Dagster
and `factor_platform.defs.partitions` read it at import or first use), then imports them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
RESULT_PREFIX = "BENCH_RESULT "

# Dagster's two levers that factor_platform.running.instance sets by default (DAGSTER_ENV_DEFAULTS).
PLATFORM_DAGSTER_ENV = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_line(scenario: str, seconds: float, baseline: str, baseline_seconds: float) -> str:
    """The one machine-readable line of a scenario (ratio = baseline / measured: higher is better)."""
    ratio = baseline_seconds / seconds if seconds > 0 else float("inf")
    return f"bench: {scenario} seconds={seconds:.3f} baseline={baseline} baseline_seconds={baseline_seconds:.3f} ratio={ratio:.3f}"


# ---------------------------------------------------------------------------------------- Postgres


def _admin_engine():
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    return sa.create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )


@contextlib.contextmanager
def scratch_postgres(prefix: str) -> Iterator[str]:
    """CREATE DATABASE <prefix>_<pid>_<random>; yield its psycopg2 URL; DROP it (FORCE) afterwards."""
    admin = _admin_engine()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def plain_pg_url(sqlalchemy_url: str) -> str:
    """dagster-postgres wants postgresql://…, not postgresql+psycopg2://…"""
    return sqlalchemy_url.replace("postgresql+psycopg2://", "postgresql://", 1)


MINIMAL_DAGSTER_YAML = """storage:
  postgres:
    postgres_url: "{url}"
telemetry:
  enabled: false
"""


@contextlib.contextmanager
def dagster_home(yaml_text: str) -> Iterator[Path]:
    """A temp DAGSTER_HOME holding `yaml_text` as dagster.yaml (removed afterwards)."""
    home = Path(tempfile.mkdtemp(prefix="bench_dagster_home_"))
    try:
        (home / "dagster.yaml").write_text(yaml_text)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------------------- workers


def machine_reference_s() -> float:
    """Seconds of a fixed CPU-bound workload (a Python loop, a numpy matmul): the same code times
    differently from hour to hour on this shared machine, and a bench that reports this beside its
    figures says which machine it ran on (0.23-0.30 s beside an idle daemon here)."""
    import numpy as np

    started = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i * i
    a = np.random.default_rng(0).standard_normal((600, 600))
    for _ in range(20):
        a @ a
    return round(time.perf_counter() - started, 3)


def emit(result: dict) -> None:
    """A worker's result, one JSON line on stdout (everything human goes to stderr)."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def run_worker(
    script: str, args: dict, *, env: dict[str, str | None] | None = None, timeout: float | None = None
) -> list[dict]:
    """Run bench/<script> in a fresh interpreter with `args` as JSON; return its BENCH_RESULT dicts.

    `env` overrides the environment (a None value unsets the variable). The child's stderr is
    passed through (progress lines); a non-zero exit raises with the tail of its output.
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), json.dumps(args)],
        env=child_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        timeout=timeout,
    )
    results = [
        json.loads(line[len(RESULT_PREFIX) :]) for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)
    ]
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-20:])
        raise RuntimeError(f"{script} exited {proc.returncode} after {time.perf_counter() - started:.0f} s:\n{tail}")
    return results


def worker_args() -> dict:
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def quiet_warnings() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
