"""Two processes materializing overlapping ranges into one analytics database at the same time.

Both must exit 0 without a deadlock or 'database is locked', and leave exactly the tables of one
clean run over the union of the ranges (row by row, every table), on SQLite and on Postgres.
"""

from __future__ import annotations

import pytest

from factor_platform_tests.reliability.scenarios import remaining_runs
from factor_platform_tests.reliability.support import assert_same_tables

LOCK_ERRORS = ("deadlock detected", "database is locked", "could not serialize access", "lock timeout")


@pytest.mark.slow
@pytest.mark.postgres  # Dagster storage of the runs
@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_overlapping_runs_leave_the_tables_of_one_clean_run(scenarios, dialect):
    reference = scenarios.result("reference")
    assert reference.error is None and reference.children[-1].exitcode == 0, reference.report()
    outcome = scenarios.result(f"overlap-{dialect}")
    assert outcome.error is None, outcome.report()
    runs = outcome.children[-2:]
    for child in runs:
        output = (child.stdout + child.stderr).lower()
        assert not [e for e in LOCK_ERRORS if e in output], "a lock error in an overlapping run:\n" + child.describe()
        assert child.exitcode == 0, "both overlapping runs must succeed:\n" + outcome.report()
    assert_same_tables(reference.tables, outcome.tables, f"two overlapping runs on {dialect}")
    assert remaining_runs(outcome) == [], "together the two runs must have materialized every partition"
