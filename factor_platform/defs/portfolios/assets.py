"""Portfolio layer (date x portfolio): values, P&L snapshots, sector weights and risk analytics.

One multi-asset: the valuation every table rests on is computed once per run; each table is
still its own asset (own lineage, own partitions, selectable alone).
"""

import dagster as dg
import pandas as pd

from factor_platform.defs.partitions import CALENDAR, partition_metadata, portfolio_day_partitions, rectangle
from factor_platform.defs.resources import AnalyticsDatabase
from factor_platform.layers.names import PORTFOLIO_ASSETS as TABLES
from factor_platform.layers.portfolio import update_portfolios

# Lineage inside the layer. The symbol layer it reads (prices, symbol_factor_exposures,
# company_profiles) is deliberately not declared as a partition-mapped dependency: Dagster then
# resolves every upstream (date x all symbols) partition per session for data-version provenance —
# measured at ~55% of a portfolio run's time (a dynamic-partition query per session). The order
# between the layers is kept by the planner, the schedule and the sensor instead.
_DEPS = {
    "position_values": [],
    "portfolio_snapshots": ["position_values"],
    "portfolio_factor_exposures": ["position_values", "portfolio_snapshots"],
    "portfolio_sector_weights": ["position_values", "portfolio_snapshots"],
    "portfolio_risk": ["position_values", "portfolio_snapshots"],
    "portfolio_correlations": ["position_values"],
    "stress_results": ["portfolio_factor_exposures"],
}
_DESCRIPTIONS = {
    "position_values": "Price, market value, delta and delta-adjusted exposure of every position on every session.",
    "portfolio_snapshots": "Equity, cash, long/short/gross/net exposure and the day's P&L (no double count), from inception.",
    "portfolio_factor_exposures": "Portfolio betas to the twelve factors: sum of exposure/equity x symbol beta, in dollars too.",
    "portfolio_sector_weights": "Net exposure per sector as a fraction of equity (a position's own sector overrides the profile's).",
    "portfolio_risk": "Realized and EWMA-forecast volatility of the current holdings, HHI, effective N, top-3/top-10 weights.",
    "portfolio_correlations": "Pearson correlations of daily log returns over 90 sessions between public holdings, with clusters.",
    "stress_results": "Direct P&L of each stress scenario: sum over factors of dollar exposure x shock.",
}


def _specs() -> list[dg.AssetSpec]:
    # Built in a function: the defs loader would take module-level specs for assets of their own.
    return [
        dg.AssetSpec(
            name,
            partitions_def=portfolio_day_partitions,
            group_name="portfolios",
            kinds={"python"},
            description=_DESCRIPTIONS[name],
            deps=_DEPS[name],
            skippable=True,
        )
        for name in TABLES
    ]


@dg.multi_asset(
    name="portfolio_analytics",
    specs=_specs(),
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags={"factor_platform/layer": "portfolios"},
)
def portfolio_analytics(context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase):
    """Value every position, roll P&L forward (from the stored snapshot before the span, else from inception),
    and derive the risk tables."""
    days, portfolio_ids = rectangle(context)
    selected = [t for t in TABLES if dg.AssetKey(t) in context.selected_asset_keys]
    update = update_portfolios(analytics_db.get(), portfolio_ids, days, selected, calendar=CALENDAR)
    for table in selected:
        metadata = {"rows_written": update.written[table], "portfolios": len(portfolio_ids), "sessions": len(days)}
        if table == "portfolio_snapshots":
            metadata["incomplete_snapshots"] = sum(len(v) for v in update.incomplete.values())
            # Portfolios whose roll began before the span: each read its whole history (no usable snapshot).
            metadata["rolled_from_inception"] = sum(start < days[0] for start in update.rolled_from.values())
            metadata = partition_metadata(metadata, {"missing_symbols": update.missing})
        if table == "portfolio_factor_exposures" and len(update.frames[table]):
            metadata["top_exposures"] = dg.MetadataValue.md(_top_exposures_markdown(update.frames[table]))
        yield dg.MaterializeResult(asset_key=table, metadata=metadata)


def _top_exposures_markdown(frame: pd.DataFrame, n: int = 10) -> str:
    latest = frame[frame["date"] == frame["date"].max()]
    latest = latest.reindex(latest["beta"].abs().sort_values(ascending=False).index).head(n)
    rows = [
        f"| {r.portfolio_id} | {r.factor} | {r.beta:+.3f} | {r.exposure_dollar:+,.0f} |" for r in latest.itertuples()
    ]
    return "| portfolio | factor | beta | exposure $ |\n|---|---|---|---|\n" + "\n".join(rows)
