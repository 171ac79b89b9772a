"""The nightly schedule: after the close (America/New_York), the symbol layer's missing sessions.

Only on sessions; a missed evening is caught up by the next one (every missing session of the last
CATCH_UP_SESSIONS, or since the store's newest prices when more were missed) -- inside the partition
window; older sessions are `materialize`'s (history). The planner decides what is missing; this
adapter turns it into one run, or, when it is large, the first wave of runs per core (the sensor asks
for the next). Failed fetches are retried by the next `materialize`, stale partitions
by the portfolio sensor, which also follows with the portfolios once the symbols are done.
"""

import dagster as dg

from factor_platform import settings
from factor_platform.defs.archive import archive_job
from factor_platform.defs.history import run_request
from factor_platform.defs.jobs import asset_checks_job, symbol_layer_job
from factor_platform.defs.partitions import CALENDAR, PARTITIONS_FROM
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.planning.plan import PlanRequest, plan
from factor_platform.planning.rectangles import Rectangle
from factor_platform.planning.state import read_state
from factor_platform.planning.waves import PARALLEL_MIN_PARTITIONS, nightly_run, nightly_run_key, nightly_waves

CATCH_UP_SESSIONS = 10


@dg.schedule(
    name="nightly_schedule",
    job=symbol_layer_job,
    cron_schedule="0 18 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_schedule(context: dg.ScheduleEvaluationContext, analytics_db: AnalyticsDatabase):
    """Every session at 18:00 New York time: the new session (and any missed) for all symbols."""
    day = context.scheduled_execution_time.date()
    if not sessions.is_session(day, CALENDAR):
        return dg.SkipReason(f"{day} is not a {CALENDAR} session")
    symbols = context.instance.get_dynamic_partitions("symbol")
    if not symbols:
        return dg.SkipReason("no symbols registered yet")
    request = PlanRequest(
        start=max(sessions.sessions_before(day, CATCH_UP_SESSIONS, CALENDAR), PARTITIONS_FROM),
        end=day,
        symbols=tuple(symbols),
        calendar=CALENDAR,
        first_session=PARTITIONS_FROM,  # a partition run: nothing before the window
        retry_failed=False,
        recompute_stale=False,
    )
    runs = plan(read_state(context.instance, analytics_db.get(), request), request).symbol_runs
    if not runs:
        return dg.SkipReason(f"every symbol is up to date through {day}")
    # One run over the whole span x all symbols, not one per missing rectangle: the daemon may run
    # separate runs in parallel, and a symbol's betas must not be computed before the ETFs' prices
    # of the same sessions exist. Inside one run, prices are written before what reads them;
    # partitions already materialized in the span are rewritten identically.
    span = Rectangle(min(r.rectangle.first for r in runs), max(r.rectangle.last for r in runs), tuple(symbols))
    if settings.workers() > 1 and nightly_run(span).partition_count(CALENDAR) >= PARALLEL_MIN_PARTITIONS:
        # A large nightly in waves, a run per core: the prices now, the betas and metrics from the
        # portfolio sensor once every prices run has succeeded (planning.waves.nightly_waves).
        fetch, _ = nightly_waves(day, span, settings.workers())
        return [run_request(r, run_key=nightly_run_key(r)) for r in fetch]
    return dg.RunRequest(run_key=f"nightly:{day}", tags=span.tags())


def _weekdays_in_new_york(name: str, job, at: str, description: str) -> dg.ScheduleDefinition:
    """A job every weekday at `at` (HH:MM) New York time, running from the start."""
    hour, minute = (int(part) for part in at.split(":"))
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=f"{minute} {hour} * * 1-5",
        execution_timezone="America/New_York",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )


checks_schedule = _weekdays_in_new_york(
    "checks_schedule", asset_checks_job, "20:30", "Invariants and freshness of both layers, after the nightly runs."
)
archive_schedule = _weekdays_in_new_york(
    "archive_schedule",
    archive_job,
    "17:00",
    "Before the nightly: partitions that left the window (FACTOR_PLATFORM_PARTITION_MONTHS) become history spans.",
)
