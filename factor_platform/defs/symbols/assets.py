"""Symbol layer: prices, factor exposures and metrics (date x symbol), profiles and fundamentals (symbol).

Every asset computes the whole rectangle of sessions x symbols its run was given in one pass
and writes it in one transaction (the bodies: `layers.prices`, `layers.symbols`); re-running a
partition rewrites identical rows.
"""

import dagster as dg

from factor_platform.defs.partitions import (
    CALENDAR,
    partition_metadata,
    rectangle,
    symbol_day_partitions,
    symbol_partitions,
)
from factor_platform.defs.resources import MARKET_DATA_POOL, AnalyticsDatabase, MarketData
from factor_platform.domain.factor_models import factor_tickers, load_regressions
from factor_platform.layers.names import REFRESH_TAG
from factor_platform.layers.prices import update_prices
from factor_platform.layers.symbols import (
    SYMBOL_ANALYTICS,
    skipped_symbols,
    update_reference,
    update_symbol_analytics,
)

_SYMBOL_LAYER = dict(
    group_name="symbols",
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags={"factor_platform/layer": "symbols"},
)


@dg.asset(partitions_def=symbol_day_partitions, pool=MARKET_DATA_POOL, kinds={"python"}, **_SYMBOL_LAYER)
def prices(
    context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase, market_data: MarketData
) -> dg.MaterializeResult:
    """Daily prices and corporate actions as the source has them: an overlap of stored sessions re-read, a changed
    symbol's whole history (re-basings, restatements, late rows), missed sessions filled."""
    db, source = analytics_db.get(), market_data.get()
    days, symbols = rectangle(context)
    skipped = skipped_symbols(db, "prices")
    update = update_prices(
        db,
        source,
        symbols,
        days,
        calendar=CALENDAR,
        skipped=skipped,
        refresh=context.run.tags.get(REFRESH_TAG) == "true",
    )
    all_skipped = sorted(skipped | set(update.newly_skipped))
    if update.option_gaps:
        context.log.info(
            f"{len(update.option_gaps)} option contract(s) without a market price, priced by the model: {update.option_gaps}"
        )
    if update.rebased or update.restated:
        context.log.warning(
            f"source changed stored prices: re-based {update.rebased}, changed from {update.restated}; "
            f"whole history re-read for {update.reread}; stale partitions marked {update.stale}"
        )
    for why in [*update.inferred.values(), *update.unexplained.values(), *update.breaks.values()]:
        context.log.warning(why)
    return dg.MaterializeResult(
        metadata=partition_metadata(
            {
                "rows_written": update.written,
                "symbols": len(symbols),
                "source": source.name,
                "failed": len(update.failures),
                "skipped": len(all_skipped),
                "option_contracts_model_priced": len(update.option_gaps),
                "corporate_actions_written": update.actions,
                "symbols_rebased": len(update.rebased),
                "symbols_restated": len(update.restated),
                "symbols_reread": len(update.reread),
                "splits_inferred": len(update.inferred),
                "rebasings_unexplained": len(update.unexplained),
                "price_breaks": len(update.breaks),
                "stale_keys_marked": sum(update.stale.values()),
            },
            {
                "symbols_failed": update.failures,
                "symbols_skipped": all_skipped,
                "rebased": update.rebased,
                "restated_from": update.restated,
                "stale_marked": update.stale,
                "splits_inferred": update.inferred,
                "rebasings_unexplained": update.unexplained,
                "price_breaks": update.breaks,
            },
        )
    )


_ANALYTICS_DESCRIPTIONS = {
    "symbol_factor_exposures": "Rolling OLS, ridge and spread betas of each symbol on the factor ETFs (contract §4).",
    "symbol_metrics": "Trailing returns, realized volatility and 52-week range per symbol and session (history kept).",
}


def _analytics_specs() -> list[dg.AssetSpec]:
    # Built in a function: the defs loader would take module-level specs for assets of their own.
    return [
        dg.AssetSpec(
            name,
            partitions_def=symbol_day_partitions,
            group_name="symbols",
            kinds={"python"},
            description=description,
            deps=[prices],
            skippable=True,
        )
        for name, description in _ANALYTICS_DESCRIPTIONS.items()
    ]


@dg.multi_asset(
    name="symbol_analytics",
    specs=_analytics_specs(),
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags={"factor_platform/layer": "symbols"},
)
def symbol_analytics(context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase):
    """Factor exposures and metrics of the rectangle, from one read of its prices (each table selectable alone)."""
    days, symbols = rectangle(context)
    selected = [t for t in SYMBOL_ANALYTICS if dg.AssetKey(t) in context.selected_asset_keys]
    update = update_symbol_analytics(analytics_db.get(), days, symbols, selected, calendar=CALENDAR)
    if update.factors is not None:
        failures = update.factors.failures
        failed = sorted(failures["symbol"].unique().tolist()) if len(failures) else []
        yield dg.MaterializeResult(
            asset_key="symbol_factor_exposures",
            metadata=partition_metadata(
                {
                    "rows_written": update.factors.written,
                    "symbols": len(symbols),
                    "factor_failures": len(failures),
                    "mean_market_beta": update.factors.mean_market_beta,
                },
                {"failed_symbols": failed},
            ),
        )
    if update.metrics is not None:
        yield dg.MaterializeResult(
            asset_key="symbol_metrics",
            metadata=partition_metadata(
                {"rows_written": update.metrics.written, "symbols": len(symbols)},
                {"symbols_without_prices": update.metrics.unpriced},
            ),
        )


@dg.asset(
    partitions_def=symbol_partitions,
    pool=MARKET_DATA_POOL,
    group_name="symbols",
    kinds={"python"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def company_profiles(
    context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase, market_data: MarketData
) -> dg.MaterializeResult:
    """Name, sector, industry, market cap and currency of each symbol."""
    return _reference(context, analytics_db, "company_profiles", "profile", market_data.get().fetch_profiles)


@dg.asset(
    partitions_def=symbol_partitions,
    pool=MARKET_DATA_POOL,
    group_name="symbols",
    kinds={"python"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def fundamentals(
    context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase, market_data: MarketData
) -> dg.MaterializeResult:
    """Reported fundamentals (revenue, earnings, book value, ...) per symbol and period end."""
    # ETFs report no company fundamentals: not asked for, so not a failure.
    etfs = set(factor_tickers(load_regressions()))
    return _reference(context, analytics_db, "fundamentals", "fundamentals", market_data.get().fetch_fundamentals, etfs)


def _reference(context, analytics_db, table: str, stage: str, fetch, exclude=frozenset()) -> dg.MaterializeResult:
    symbols = sorted(context.partition_keys)
    written, failures = update_reference(analytics_db.get(), table, stage, fetch, symbols, exclude)
    return dg.MaterializeResult(
        metadata=partition_metadata({"rows_written": written, "symbols": len(symbols)}, {"symbols_failed": failures})
    )
