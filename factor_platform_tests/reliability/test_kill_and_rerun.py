"""kill -9 of a run in the middle of its writes: the next run completes, no row missing or duplicated.

Compared row by row, every table, with a clean run of the same book in another database
(``scenarios.py`` runs both, in child processes of the real CLI).
"""

from __future__ import annotations

import pytest

from factor_platform_tests.reliability.scenarios import remaining_runs
from factor_platform_tests.reliability.support import assert_same_tables


@pytest.mark.slow
@pytest.mark.postgres  # Dagster storage of the runs
def test_kill_9_mid_run_then_rerun_matches_a_clean_run(scenarios):
    reference = scenarios.result("reference")
    assert reference.error is None and reference.children[-1].exitcode == 0, reference.report()
    outcome = scenarios.result("kill")
    assert outcome.error is None, outcome.report()
    killed, rerun = outcome.children[-3:-1], outcome.children[-1]
    for (table, interrupted), child in zip(outcome.notes["kills"], killed):
        assert interrupted and child.exitcode == -9, (
            f"the run was meant to be SIGKILLed right after its first {table} commit, but it had already ended:\n"
            + child.describe()
        )
    assert rerun.exitcode == 0, "the run after two kill -9 must complete:\n" + outcome.report()
    assert_same_tables(reference.tables, outcome.tables, "after kill -9 and a re-run")
    assert remaining_runs(outcome) == [], "after the re-run Dagster must hold every partition as materialized"
