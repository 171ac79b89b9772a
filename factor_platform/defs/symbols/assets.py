"""Symbol layer: prices, factor exposures and metrics (date x symbol), profiles and fundamentals (symbol).

Every asset computes the whole rectangle of sessions x symbols its run was given in one pass
and writes it in one transaction; re-running a partition rewrites identical rows.
"""


import datetime as dt

import dagster as dg
import pandas as pd

from factor_platform.calc.factors import factor_exposures
from factor_platform.calc.metrics import symbol_metrics as compute_symbol_metrics
from factor_platform.calc.returns import simple_returns
from factor_platform.defs.partitions import CALENDAR, partition_metadata, rectangle, symbol_day_partitions, symbol_partitions
from factor_platform.defs.resources import MARKET_DATA_POOL, AnalyticsDatabase, MarketData
from factor_platform.domain.factor_models import LOOKBACK_SESSIONS, factor_tickers, load_regressions
from factor_platform.layers.failures import failure_frame, fetch_isolated, settle_failures
from factor_platform.settings import max_attempts
from factor_platform.layers.invalidation import clear_stale
from factor_platform.layers.prices import REFRESH_TAG, update_prices
from factor_platform.layers.panels import price_panel
from factor_platform.sources.base import FUNDAMENTAL_COLUMNS, PROFILE_COLUMNS
from factor_platform.domain.symbols import is_option_symbol

_SYMBOL_LAYER = dict(
    group_name="symbols",
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags={"factor_platform/layer": "symbols"},
)
METRICS_LOOKBACK = 253  # return_252d needs the price 252 priced sessions back


def _skipped(db, stage: str) -> set[str]:
    """Symbols given up on for `stage` after too many failed fetches (delisted or unknown)."""
    return set(db.read("symbol_failures", {"stage": stage, "status": "skipped"}, columns=["symbol"])["symbol"])


def _date_span(days: list[dt.date]) -> tuple[dt.date, dt.date]:
    return days[0], days[-1]


@dg.asset(partitions_def=symbol_day_partitions, pool=MARKET_DATA_POOL, kinds={"python"}, **_SYMBOL_LAYER)
def prices(context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase, market_data: MarketData) -> dg.MaterializeResult:
    """Daily prices and corporate actions, re-reading an overlap of stored sessions (re-basings, restatements)."""
    db, source = analytics_db.get(), market_data.get()
    days, symbols = rectangle(context)
    skipped = _skipped(db, "prices")
    update = update_prices(db, source, symbols, days, calendar=CALENDAR, skipped=skipped,
                           refresh=context.run.tags.get(REFRESH_TAG) == "true")
    all_skipped = sorted(skipped | set(update.newly_skipped))
    if update.option_gaps:
        context.log.info(f"{len(update.option_gaps)} option contract(s) without a market price, priced by the model: {update.option_gaps}")
    if update.rebased or update.restated:
        context.log.warning(f"source changed stored prices: re-based {update.rebased}, changed from {update.restated}; "
                            f"stale partitions marked {update.stale}")
    return dg.MaterializeResult(
        metadata=partition_metadata(
            {"rows_written": update.written, "symbols": len(symbols), "source": source.name, "failed": len(update.failures),
             "skipped": len(all_skipped), "option_contracts_model_priced": len(update.option_gaps),
             "corporate_actions_written": update.actions, "symbols_rebased": len(update.rebased),
             "symbols_restated": len(update.restated), "stale_keys_marked": sum(update.stale.values())},
            {"symbols_failed": update.failures, "symbols_skipped": all_skipped, "rebased": update.rebased,
             "restated_from": update.restated, "stale_marked": update.stale},
        )
    )


@dg.asset(partitions_def=symbol_day_partitions, deps=[prices], kinds={"python"}, **_SYMBOL_LAYER)
def symbol_factor_exposures(context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase) -> dg.MaterializeResult:
    """Rolling OLS, ridge and spread betas of each symbol on the factor ETFs (contract §4)."""
    db = analytics_db.get()
    days, symbols = rectangle(context)
    first, last = _date_span(days)
    regressions = load_regressions()
    targets = [s for s in symbols if not is_option_symbol(s)]  # options get factors through their underlying
    longest = max(r.window for r in regressions)
    panel = price_panel(
        db, targets + factor_tickers(regressions), first_date=first, last_date=last,
        lookback_sessions=LOOKBACK_SESSIONS, min_history=longest + 1, calendar=CALENDAR,
    )
    exposures, failed = factor_exposures(
        simple_returns(panel.prices), regressions, symbols=targets, dates=pd.DatetimeIndex(days)
    )
    latest_ok = exposures.groupby(["symbol", "factor"], as_index=False)["date"].max()
    ok_pairs = pd.DataFrame({"symbol": latest_ok["symbol"], "stage": "factor:" + latest_ok["factor"], "date": latest_ok["date"]})
    with db.begin() as conn:
        written = db.replace("symbol_factor_exposures", exposures, {"symbol": symbols, "date": (first, last)}, conn=conn)
        settle_failures(db, conn, stage=None, succeeded=ok_pairs, failed=failed)
        clear_stale(db, conn, "symbol_factor_exposures", symbols, first, last, calendar=CALENDAR)
    market = exposures.loc[exposures["factor"] == "market_beta", "beta"]
    return dg.MaterializeResult(
        metadata=partition_metadata(
            {"rows_written": written, "symbols": len(symbols), "factor_failures": len(failed),
             "mean_market_beta": float(market.mean()) if len(market) else float("nan")},
            {"failed_symbols": sorted(failed["symbol"].unique().tolist()) if len(failed) else []},
        )
    )


@dg.asset(partitions_def=symbol_day_partitions, deps=[prices], kinds={"python"}, **_SYMBOL_LAYER)
def symbol_metrics(context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase) -> dg.MaterializeResult:
    """Trailing returns, realized volatility and 52-week range per symbol and session (history kept)."""
    db = analytics_db.get()
    days, symbols = rectangle(context)
    first, last = _date_span(days)
    panel = price_panel(
        db, symbols, first_date=first, last_date=last,
        lookback_sessions=LOOKBACK_SESSIONS, min_history=METRICS_LOOKBACK, calendar=CALENDAR,
    )
    metrics = compute_symbol_metrics(panel.prices, panel.close, symbols=symbols, dates=pd.DatetimeIndex(days))
    with db.begin() as conn:
        written = db.replace("symbol_metrics", metrics, {"symbol": symbols, "date": (first, last)}, conn=conn)
        clear_stale(db, conn, "symbol_metrics", symbols, first, last, calendar=CALENDAR)
    priced = set(metrics["symbol"])
    return dg.MaterializeResult(
        metadata=partition_metadata(
            {"rows_written": written, "symbols": len(symbols)}, {"symbols_without_prices": sorted(set(symbols) - priced)}
        )
    )


@dg.asset(partitions_def=symbol_partitions, pool=MARKET_DATA_POOL, group_name="symbols", kinds={"python"},
          backfill_policy=dg.BackfillPolicy.single_run())
def company_profiles(context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase, market_data: MarketData) -> dg.MaterializeResult:
    """Name, sector, industry, market cap and currency of each symbol."""
    return _load_reference(context, analytics_db, "company_profiles", "profile", market_data.get().fetch_profiles)


@dg.asset(partitions_def=symbol_partitions, pool=MARKET_DATA_POOL, group_name="symbols", kinds={"python"},
          backfill_policy=dg.BackfillPolicy.single_run())
def fundamentals(context: dg.AssetExecutionContext, analytics_db: AnalyticsDatabase, market_data: MarketData) -> dg.MaterializeResult:
    """Reported fundamentals (revenue, earnings, book value, ...) per symbol and period end."""
    # ETFs report no company fundamentals: not asked for, so not a failure.
    etfs = set(factor_tickers(load_regressions()))
    return _load_reference(context, analytics_db, "fundamentals", "fundamentals", market_data.get().fetch_fundamentals, etfs)


def _load_reference(context, analytics_db, table: str, stage: str, fetch, exclude=frozenset()) -> dg.MaterializeResult:
    db = analytics_db.get()
    symbols = sorted(context.partition_keys)
    skipped = _skipped(db, stage)
    wanted = [s for s in symbols if not is_option_symbol(s) and s not in exclude and s not in skipped]
    columns = PROFILE_COLUMNS if table == "company_profiles" else FUNDAMENTAL_COLUMNS
    result = fetch_isolated(fetch, wanted, columns=columns)
    frame = result.frame
    if table == "company_profiles" and len(frame):
        frame = frame.assign(updated_at=pd.Timestamp.now(tz="UTC").tz_localize(None))
    ok = sorted(set(wanted) - set(result.failures))
    today = dt.date.today()
    with db.begin() as conn:
        written = db.upsert(table, frame, conn=conn) if len(frame) else 0
        settle_failures(db, conn, stage=stage, succeeded=ok, failed=failure_frame(result.failures, stage, today),
                        limit=max_attempts())
    return dg.MaterializeResult(
        metadata=partition_metadata({"rows_written": written, "symbols": len(symbols)}, {"symbols_failed": result.failures})
    )
