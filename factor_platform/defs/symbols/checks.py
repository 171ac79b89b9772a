"""Asset checks of the symbol layer: financial invariants and freshness in trading sessions."""

import dagster as dg

from factor_platform.defs.partitions import CALENDAR, PARTITIONS_FROM, START_DATE
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.domain import sessions
from factor_platform.layers.invalidation import stale_summary
from factor_platform.layers.prices import REBASING_STAGE, unexplained_findings
from factor_platform.storage import invariants

# The invariant checks read the partition window's rows (all rows without a window): older rows were
# checked while they were in it, and a check's cost must not grow with history (docs/scale.md).
CHECKED_FROM = PARTITIONS_FROM if PARTITIONS_FROM > START_DATE else None


@dg.asset_check(
    asset="prices", description="Every stored close and adjusted close of the partition window is positive."
)
def positive_prices(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    bad = invariants.nonpositive_prices(analytics_db.get(), since=CHECKED_FROM)
    return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_not_positive": bad})


@dg.asset_check(
    asset="symbol_factor_exposures",
    description="Every beta of the partition window is finite and its R² lies in [0, 1].",
)
def finite_betas(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    bad = invariants.invalid_betas(analytics_db.get(), since=CHECKED_FROM)
    return dg.AssetCheckResult(passed=bad == 0, metadata={"invalid_rows": bad})


@dg.asset_check(
    asset="prices",
    description="Every re-basing is explained by a split, and no daily move beyond "
    "FACTOR_PLATFORM_BREAK_THRESHOLD (40 %) lacks a corporate action: the open `rebasing` failures "
    "(error) and `price_break` warnings the prices runs recorded.",
)
def explained_price_breaks(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    found = unexplained_findings(analytics_db.get())
    rebasings = found[found["stage"] == REBASING_STAGE]
    listed = [r.error for r in found.head(20).itertuples(index=False)]
    return dg.AssetCheckResult(
        passed=found.empty,
        severity=dg.AssetCheckSeverity.ERROR if len(rebasings) else dg.AssetCheckSeverity.WARN,
        metadata={
            "unexplained_breaks": int((found["stage"] != REBASING_STAGE).sum()),
            "unexplained_rebasings": len(rebasings),
            "examples": dg.MetadataValue.json(listed),
        },
    )


@dg.asset_check(
    asset="symbol_factor_exposures",
    description="No partition is stale (computed from prices the source has since changed).",
)
def no_stale_partitions(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    stale = stale_summary(analytics_db.get())
    return dg.AssetCheckResult(
        passed=not stale, severity=dg.AssetCheckSeverity.WARN, metadata={"stale": dg.MetadataValue.json(stale)}
    )


@dg.asset_check(asset="prices", description="Prices are current: warn one session behind, error at two or more.")
def prices_freshness(analytics_db: AnalyticsDatabase) -> dg.AssetCheckResult:
    return freshness_result(analytics_db.get().max_date("prices"))


def freshness_result(latest_date) -> dg.AssetCheckResult:
    latest = sessions.latest_closed_session(name=CALENDAR)
    behind = sessions.sessions_behind(latest_date, latest, CALENDAR)
    severity = dg.AssetCheckSeverity.ERROR if behind is None or behind >= 2 else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=behind == 0,
        severity=severity,
        metadata={
            "latest_date": str(latest_date),
            "latest_session": str(latest),
            "sessions_behind": -1 if behind is None else behind,
        },
    )
