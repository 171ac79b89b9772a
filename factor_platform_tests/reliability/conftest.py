"""Fixtures of the reliability tests (the end-of-session line saying what was tried and lost: the root conftest).

* ``dagster_template`` — one Postgres database with Dagster's schema, copied (CREATE DATABASE …
  TEMPLATE) for the DAGSTER_HOME of every subprocess scenario: a copy costs ~0.2 s, the schema ~2 s.
* ``memory_instance`` — Dagster's in-memory instance, for the in-process job runs.
* ``scenarios`` — the subprocess scenarios (kill -9, overlapping runs, Postgres restart), started in
  the background at the first reliability test so they overlap with the in-process tests. Under
  pytest-xdist every test of this folder runs on one worker (one unit of work: the root conftest): the
  scenarios are started once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from factor_platform_tests.reliability.support import (
    create_database,
    drop_database,
    write_dagster_yaml,
)


@pytest.fixture(scope="session")
def dagster_template(tmp_path_factory) -> Iterator[str]:
    import dagster as dg

    url = create_database("fp_rel_dagster_tpl")
    home = write_dagster_yaml(tmp_path_factory.mktemp("dagster_template"), url)
    instance = dg.DagsterInstance.from_config(str(home))  # creates the run/event/schedule tables
    instance.dispose()
    try:
        yield url.rsplit("/", 1)[1]
    finally:
        drop_database(url)


@pytest.fixture
def memory_instance(monkeypatch):
    """Dagster's in-memory instance (its SQL storage on in-memory SQLite): real bookkeeping, no disk, no server
    round trips -- for the in-process tests, which need no persistence across processes."""
    import dagster as dg

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    instance = dg.DagsterInstance.ephemeral()
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.fixture(scope="session")
def scenarios(dagster_template, tmp_path_factory):
    from factor_platform_tests.reliability import processes
    from factor_platform_tests.reliability.scenarios import Scenarios

    processes.start_fork_server()  # here, in the main thread, before any scenario thread exists
    runner = Scenarios(tmp_path_factory.mktemp("scenarios"), dagster_template).start()
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(scope="session", autouse=True)
def _start_scenarios_early(request):
    """Start the subprocess scenarios at the first reliability test when any selected test needs them,
    so that they run while the in-process tests do."""
    if any("scenarios" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("scenarios")
