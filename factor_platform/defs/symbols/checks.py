"""Asset checks of the symbol layer: financial invariants and freshness in trading sessions."""

import dagster as dg

from factor_platform.defs.partitions import CALENDAR
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.layers.invalidation import stale_summary
from factor_platform.layers.prices import unexplained_price_breaks
from factor_platform.storage import invariants


@dg.asset_check(asset="prices", description="Every stored close and adjusted close is positive.")
def positive_prices(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    bad = invariants.nonpositive_prices(analytics_db.get())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_not_positive": bad})


@dg.asset_check(asset="symbol_factor_exposures", description="Every beta is finite and every R² lies in [0, 1].")
def finite_betas(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    bad = invariants.invalid_betas(analytics_db.get())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"invalid_rows": bad})


@dg.asset_check(asset="prices", description="No close-to-close break a split would explain (<= -50 %, >= +100 %) without a split on that date.")
def explained_price_breaks(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    breaks = unexplained_price_breaks(analytics_db.get())
    listed = [f"{r.symbol} {r.date:%Y-%m-%d} {r[2]:+.1%}" for r in breaks.head(20).itertuples(index=False)]
    return dg.AssetCheckResult(passed=breaks.empty, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"unexplained_breaks": len(breaks), "examples": dg.MetadataValue.json(listed)})


@dg.asset_check(asset="symbol_factor_exposures", description="No partition is stale (computed from prices the source has since changed).")
def no_stale_partitions(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    stale = stale_summary(analytics_db.get())
    return dg.AssetCheckResult(passed=not stale, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"stale": dg.MetadataValue.json(stale)})


@dg.asset_check(asset="prices", description="Prices are current: warn one session behind, error at two or more.")
def prices_freshness(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    return freshness_result(analytics_db.get().max_date("prices"))


def freshness_result(latest_date) -> dg.AssetCheckResult:
    latest = sessions.latest_closed_session(name=CALENDAR)
    behind = sessions.sessions_behind(latest_date, latest, CALENDAR)
    severity = dg.AssetCheckSeverity.ERROR if behind is None or behind >= 2 else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=behind == 0, severity=severity,
        metadata={"latest_date": str(latest_date), "latest_session": str(latest), "sessions_behind": -1 if behind is None else behind},
    )
