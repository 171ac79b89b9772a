"""The nightly schedule: after the close (America/New_York), the symbol layer's missing sessions.

Only on sessions; a missed evening is caught up by the next one (every missing session of the last
CATCH_UP_SESSIONS, or since the store's newest prices when more were missed). The portfolio sensor follows with the portfolios once the symbols are done.
"""

import dagster as dg

from factor_platform.defs.jobs import asset_checks_job, symbol_layer_job
from factor_platform.defs.partitions import CALENDAR, START_DATE
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.layers.names import SYMBOL_DAY_ASSETS
from factor_platform.planning.planner import gap_start, plan_layer
from factor_platform.planning.rectangles import Rectangle

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
    # the catch-up window, or back to the store's newest prices after more missed nights than that
    first = max(
        min(sessions.sessions_before(day, CATCH_UP_SESSIONS, CALENDAR), gap_start(analytics_db.get(), CALENDAR)),
        START_DATE,
    )
    days = [d.date() for d in sessions.sessions_in_range(first, day, CALENDAR)]
    symbols = context.instance.get_dynamic_partitions("symbol")
    if not symbols:
        return dg.SkipReason("no symbols registered yet")
    runs = plan_layer(
        context.instance,
        job_name=symbol_layer_job.name,
        assets=SYMBOL_DAY_ASSETS,
        dimension="symbol",
        days_by_key={s: days for s in symbols},
    )
    if not runs:
        return dg.SkipReason(f"every symbol is up to date through {day}")
    # One run over the whole span x all symbols, not one per missing rectangle: the daemon may run
    # separate runs in parallel, and a symbol's betas must not be computed before the ETFs' prices
    # of the same sessions exist. Inside one run, prices are written before what reads them;
    # partitions already materialized in the span are rewritten identically.
    span = Rectangle(min(r.rectangle.first for r in runs), max(r.rectangle.last for r in runs), tuple(symbols))
    return dg.RunRequest(run_key=f"nightly:{day}", tags=span.tags())


checks_schedule = dg.ScheduleDefinition(
    name="checks_schedule",
    job=asset_checks_job,
    cron_schedule="30 20 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Invariants and freshness of both layers, after the nightly runs.",
)
