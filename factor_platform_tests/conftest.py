"""Fixtures shared by the whole suite: real databases, on SQLite and on the machine's PostgreSQL.

* ``database``     — an initialized :class:`Database`, parametrized ``[sqlite, postgres]``.
                     sqlite: a fresh temp file per test; postgres: one database per test session
                     (``fp_test_<pid>_<random>``, dropped at the end), every table TRUNCATEd before
                     each test. Postgres params carry ``pytest.mark.postgres``.
* ``sqlite_url``   — URL of a fresh, empty SQLite file (nothing created yet).
* ``postgres_url`` — URL of a fresh, empty Postgres database for this test only (dropped after).
                     Tests using it are marked ``postgres`` automatically.

PostgreSQL is expected at 127.0.0.1:5432 (user postgres, trust auth); override the admin URL with
``FACTOR_PLATFORM_TEST_PG_URL``. When it is unreachable the postgres tests *fail* (they do not skip):
the test command is responsible for starting it.

In parallel (pytest-xdist, ``-n 2 --dist loadfile``, as scripts/test runs it) every worker is a process of
its own: its own session fixtures (databases named with its pid or a random suffix), temp dirs and ports.
What a module builds once and shares (``build_once``, ``built``, ``fresh_build``'s cache) stays on one
worker because each module is one unit of work; ``pytest_xdist_make_scheduler`` makes every module under
reliability/ one unit together: the subprocess scenarios start at the first reliability test (whichever
it is) and must start once, on the worker that runs the tests waiting for them. Units are handed out
files with the most ``slow`` tests first, so that no long one starts last. (xdist's own
``--dist loadgroup`` cannot do this with pytest 9.2: it no longer changes node ids, pytest-xdist#1386.)
The reliability line at the end (faults injected, rows compared) adds up what every worker counted.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from factor_platform.storage import Database, schema

PG_ADMIN_URL = os.environ.get("FACTOR_PLATFORM_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


RELIABILITY = Path(__file__).parent / "reliability"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
    if hasattr(config, "workerinput"):
        # An xdist worker's order is the order units are handed out in (pytest_xdist_make_scheduler): the files
        # with the most `slow` tests first, so that no long file starts last while the other worker has nothing
        # left. Stable (a file keeps its own order) and the same on every worker.
        unit = {item: RELIABILITY if item.path.is_relative_to(RELIABILITY) else item.path for item in items}
        slow = Counter(unit[item] for item in items if item.get_closest_marker("slow"))
        items.sort(key=lambda item: -slow[unit[item]])


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown (and never called) without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, with every test under reliability/ in one unit, handed out in the workers' order
    (see the module docstring and `pytest_collection_modifyitems`)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    reliability = RELIABILITY.relative_to(config.rootpath).as_posix() + "/"
    config.option.loadscopereorder = False  # not by number of tests: a file of two browser tests is no short one

    class LoadFileReliabilityTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "reliability" if nodeid.startswith(reliability) else super()._split_scope(nodeid)

    return LoadFileReliabilityTogether(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the reliability ledger's counts to the controller (which prints them)."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        from factor_platform_tests.reliability.support import LEDGER

        output["reliability_ledger"] = LEDGER.state()


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown (and never called) without xdist
def pytest_testnodedown(node, error) -> None:
    state = getattr(node, "workeroutput", {}).get("reliability_ledger")
    if state:
        from factor_platform_tests.reliability.support import LEDGER

        LEDGER.add(state)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if hasattr(config, "workerinput"):
        return  # a worker's terminal is not shown; the controller prints the sum
    from factor_platform_tests.reliability.support import LEDGER

    if LEDGER.used:
        terminalreporter.section("reliability")
        terminalreporter.write_line(LEDGER.summary())


def _admin_engine() -> sa.Engine:
    engine = sa.create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        shown = sa.make_url(PG_ADMIN_URL).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is not reachable at {shown} ({str(exc.orig).strip()}). The postgres tests need it: "
            "start it first, e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "(or point FACTOR_PLATFORM_TEST_PG_URL at a server).",
            pytrace=False,
        )
    return engine


@contextmanager
def _fresh_postgres_database(name: str, template: str | None = None) -> Iterator[str]:
    """CREATE DATABASE ``name`` (via the admin database, AUTOCOMMIT), yield its URL, then DROP it.

    ``template``: the name of a database to copy (a migrated schema in ~0.2 s instead of seconds).
    ``synchronous_commit = off`` for the database: a commit does not wait for the WAL flush (~1.5 ms here,
    and Dagster commits every event). A crash of the server could lose the last commits of a throwaway
    database; the server is never crashed under these (reliability/ makes its own).
    """
    admin = _admin_engine()
    quote = admin.dialect.identifier_preparer.quote
    quoted = quote(name)
    suffix = f" TEMPLATE {quote(template)}" if template else ""
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}{suffix}")
            conn.exec_driver_sql(f"ALTER DATABASE {quoted} SET synchronous_commit = off")
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'factor_platform.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with _fresh_postgres_database(f"fp_test_{uuid.uuid4().hex}") as url:
        yield url


@pytest.fixture(scope="session")
def _postgres_session_database() -> Iterator[Database]:
    with _fresh_postgres_database(f"fp_test_{os.getpid()}_{uuid.uuid4().hex[:8]}") as url:
        db = Database(url)
        db.init_schema()
        try:
            yield db
        finally:
            db.dispose()


def _truncate_all(db: Database) -> None:
    """TRUNCATE every data table that has rows (probing first: TRUNCATE of empty tables still costs)."""
    quote = db.engine.dialect.identifier_preparer.quote
    probe = " UNION ALL ".join(
        f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM {quote(name)})" for name in schema.DATA_TABLES
    )
    with db.begin() as conn:
        filled = conn.exec_driver_sql(probe).scalars().all()
        if filled:
            conn.exec_driver_sql(f"TRUNCATE TABLE {', '.join(quote(name) for name in filled)}")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database(request, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'factor_platform.db'}")
        db.init_schema()
        try:
            yield db
        finally:
            db.dispose()
    else:
        db = request.getfixturevalue("_postgres_session_database")
        _truncate_all(db)
        yield db
