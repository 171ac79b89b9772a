"""Asset checks of the portfolio layer."""

import dagster as dg

from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.defs.symbols.checks import CHECKED_FROM, freshness_result
from factor_platform.storage import invariants


@dg.asset_check(
    asset="portfolio_snapshots",
    description="Every snapshot of the partition window is complete (each holding priced that day).",
)
def complete_snapshots(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    bad = invariants.incomplete_snapshots(analytics_db.get(), since=CHECKED_FROM)
    return dg.AssetCheckResult(
        passed=bad == 0, severity=dg.AssetCheckSeverity.WARN, metadata={"incomplete_snapshots": bad}
    )


@dg.asset_check(
    asset="portfolio_snapshots", description="Snapshots are current: warn one session behind, error at two or more."
)
def snapshots_freshness(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    return freshness_result(invariants.newest_snapshot(analytics_db.get()))
