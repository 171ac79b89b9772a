"""Asset checks of the symbol layer: financial invariants and freshness in trading sessions."""

import dagster as dg

from factor_platform import sessions
from factor_platform.defs.partitions import CALENDAR
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.status import sessions_behind
from factor_platform.storage import invariants


@dg.asset_check(asset="prices", description="Every stored close and adjusted close is positive.")
def positive_prices(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    bad = invariants.nonpositive_prices(analytics_db.get())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_not_positive": bad})


@dg.asset_check(asset="symbol_factor_exposures", description="Every beta is finite and every R² lies in [0, 1].")
def finite_betas(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    bad = invariants.invalid_betas(analytics_db.get())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"invalid_rows": bad})


@dg.asset_check(asset="prices", description="Prices are current: warn one session behind, error at two or more.")
def prices_freshness(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    return freshness_result(analytics_db.get().max_date("prices"))


def freshness_result(latest_date) -> dg.AssetCheckResult:
    latest = sessions.latest_closed_session(name=CALENDAR)
    behind = sessions_behind(latest_date, latest, CALENDAR)
    severity = dg.AssetCheckSeverity.ERROR if behind is None or behind >= 2 else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=behind == 0, severity=severity,
        metadata={"latest_date": str(latest_date), "latest_session": str(latest), "sessions_behind": -1 if behind is None else behind},
    )
