"""The symbol layer's other bodies (prices: `layers.prices`): factor exposures and metrics of a
rectangle of sessions x symbols, and the reference data of a block of symbols.

Each reads what it needs, computes with calc/, and writes its rectangle in one transaction
(re-running a partition rewrites identical rows); the Dagster assets only turn the outcome into metadata.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pandas as pd

from factor_platform.calc.factors import factor_exposures
from factor_platform.calc.metrics import symbol_metrics
from factor_platform.calc.returns import simple_returns
from factor_platform.domain.factor_models import LOOKBACK_SESSIONS, Regression, factor_tickers, load_regressions
from factor_platform.domain.symbols import is_option_symbol
from factor_platform.layers.failures import failure_frame, fetch_isolated, settle_failures
from factor_platform.layers.invalidation import clear_stale
from factor_platform.layers.panels import PricePanel, price_panels
from factor_platform.settings import max_attempts
from factor_platform.sources.base import FUNDAMENTAL_COLUMNS, PROFILE_COLUMNS, FetchResult
from factor_platform.storage import Database

METRICS_LOOKBACK = 253  # return_252d needs the price 252 priced sessions back
SYMBOL_ANALYTICS = ("symbol_factor_exposures", "symbol_metrics")  # computed from one price panel
REFERENCE_COLUMNS = {"company_profiles": PROFILE_COLUMNS, "fundamentals": FUNDAMENTAL_COLUMNS}


def skipped_symbols(db: Database, stage: str) -> set[str]:
    """Symbols given up on for `stage` after too many failed fetches (delisted or unknown)."""
    return set(db.read("symbol_failures", {"stage": stage, "status": "skipped"}, columns=["symbol"])["symbol"])


@dataclass
class FactorUpdate:
    written: int
    failures: pd.DataFrame  # [symbol, stage, date, error]: factors without enough history or ETF prices
    mean_market_beta: float


@dataclass
class MetricsUpdate:
    written: int
    unpriced: list[str]  # symbols without prices


@dataclass
class SymbolAnalytics:
    """What `update_symbol_analytics` wrote: None for a table it was not asked for."""

    factors: FactorUpdate | None
    metrics: MetricsUpdate | None


def update_symbol_analytics(
    db: Database, days: list[dt.date], symbols: list[str], tables: Collection[str], *, calendar: str
) -> SymbolAnalytics:
    """Factor exposures and/or metrics (`tables` of SYMBOL_ANALYTICS) of `symbols` on `days`, from one read
    of their prices: each table gets exactly the panel it would read alone, so its rows are the same."""
    unknown = sorted(set(tables) - set(SYMBOL_ANALYTICS))
    if unknown:
        raise ValueError(f"not a table of the symbol analytics: {unknown}")
    regressions = load_regressions()
    targets = [s for s in symbols if not is_option_symbol(s)]
    # (symbols, min_history) of each table's panel; both over LOOKBACK_SESSIONS before the first day.
    wanted = {
        "symbol_factor_exposures": (targets + factor_tickers(regressions), max(r.window for r in regressions) + 1),
        "symbol_metrics": (symbols, METRICS_LOOKBACK),
    }
    selected = [t for t in SYMBOL_ANALYTICS if t in tables]
    panels = dict(
        zip(
            selected,
            price_panels(
                db,
                [wanted[t] for t in selected],
                first_date=days[0],
                last_date=days[-1],
                lookback_sessions=LOOKBACK_SESSIONS,
                calendar=calendar,
            ),
            strict=True,
        )
    )
    factors = metrics = None
    if "symbol_factor_exposures" in panels:
        factors = _write_factor_exposures(
            db, days, symbols, targets, regressions, panels.pop("symbol_factor_exposures"), calendar=calendar
        )
    if "symbol_metrics" in panels:
        metrics = _write_metrics(db, days, symbols, panels.pop("symbol_metrics"), calendar=calendar)
    return SymbolAnalytics(factors, metrics)


def update_factor_exposures(db: Database, days: list[dt.date], symbols: list[str], *, calendar: str) -> FactorUpdate:
    """Rolling OLS, ridge and spread betas of `symbols` on `days` (options get theirs through the underlying)."""
    return update_symbol_analytics(db, days, symbols, ["symbol_factor_exposures"], calendar=calendar).factors


def update_symbol_metrics(db: Database, days: list[dt.date], symbols: list[str], *, calendar: str) -> MetricsUpdate:
    """Trailing returns, realized volatility and 52-week range of `symbols` on `days`."""
    return update_symbol_analytics(db, days, symbols, ["symbol_metrics"], calendar=calendar).metrics


def _write_factor_exposures(
    db: Database,
    days: list[dt.date],
    symbols: list[str],
    targets: list[str],
    regressions: list[Regression],
    panel: PricePanel,
    *,
    calendar: str,
) -> FactorUpdate:
    first, last = days[0], days[-1]
    exposures, failed = factor_exposures(
        simple_returns(panel.prices), regressions, symbols=targets, dates=pd.DatetimeIndex(days)
    )
    latest_ok = exposures.groupby(["symbol", "factor"], as_index=False)["date"].max()
    ok_pairs = pd.DataFrame(
        {"symbol": latest_ok["symbol"], "stage": "factor:" + latest_ok["factor"], "date": latest_ok["date"]}
    )
    with db.begin() as conn:
        written = db.replace(
            "symbol_factor_exposures", exposures, {"symbol": symbols, "date": (first, last)}, conn=conn
        )
        settle_failures(db, conn, stage=None, succeeded=ok_pairs, failed=failed)
        clear_stale(db, conn, "symbol_factor_exposures", symbols, first, last, calendar=calendar)
    market = exposures.loc[exposures["factor"] == "market_beta", "beta"]
    return FactorUpdate(written, failed, float(market.mean()) if len(market) else float("nan"))


def _write_metrics(
    db: Database, days: list[dt.date], symbols: list[str], panel: PricePanel, *, calendar: str
) -> MetricsUpdate:
    first, last = days[0], days[-1]
    metrics = symbol_metrics(panel.prices, panel.close, symbols=symbols, dates=pd.DatetimeIndex(days))
    with db.begin() as conn:
        written = db.replace("symbol_metrics", metrics, {"symbol": symbols, "date": (first, last)}, conn=conn)
        clear_stale(db, conn, "symbol_metrics", symbols, first, last, calendar=calendar)
    return MetricsUpdate(written, sorted(set(symbols) - set(metrics["symbol"])))


def update_reference(
    db: Database,
    table: str,
    stage: str,
    fetch: Callable[..., FetchResult],
    symbols: list[str],
    exclude: Collection[str] = (),
) -> tuple[int, dict[str, str]]:
    """Fetch and upsert `table` (company_profiles or fundamentals) of `symbols` but options, `exclude`
    and the symbols skipped for `stage`; returns (rows written, {symbol: why it failed})."""
    skipped = skipped_symbols(db, stage)
    wanted = [s for s in symbols if not is_option_symbol(s) and s not in exclude and s not in skipped]
    result = fetch_isolated(fetch, wanted, columns=REFERENCE_COLUMNS[table])
    frame = result.frame
    if table == "company_profiles" and len(frame):
        frame = frame.assign(updated_at=pd.Timestamp.now(tz="UTC").tz_localize(None))
    ok = sorted(set(wanted) - set(result.failures))
    with db.begin() as conn:
        written = db.upsert(table, frame, conn=conn) if len(frame) else 0
        settle_failures(
            db,
            conn,
            stage=stage,
            succeeded=ok,
            failed=failure_frame(result.failures, stage, dt.date.today()),
            limit=max_attempts(),
        )
    return written, result.failures
