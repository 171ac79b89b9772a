"""What the report shows, read from the analytics tables (nothing is recomputed; no HTML, no charts)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from factor_platform.calc.portfolio import pricing_symbols
from factor_platform.calc.risk import position_sectors
from factor_platform.layers.books import read_book
from factor_platform.storage import Database

# Corporate actions of the holdings shown: those after this long before the report day, up to it.
ACTIONS_LOOKBACK = pd.DateOffset(years=1)


@dataclass
class ReportData:
    """What the report shows: the portfolio row and every table's rows for `day` (history for charts)."""

    portfolio: pd.Series
    day: dt.date
    history: pd.DataFrame  # portfolio_snapshots from inception through `day`
    factors: pd.DataFrame
    sectors: pd.DataFrame
    stress: pd.DataFrame
    risk: pd.DataFrame
    correlations: pd.DataFrame
    positions: pd.DataFrame  # position_values on `day` joined to positions (+ sector)
    corporate_actions: pd.DataFrame  # splits and dividends of the holdings in the year up to `day`, newest first
    scenario_descriptions: dict[str, str]
    factor_order: list[str]

    @property
    def snapshot(self) -> pd.Series:
        return self.history.iloc[-1]


def _as_date(day: dt.date | str | pd.Timestamp | None) -> dt.date | None:
    if day is None:
        return None
    if isinstance(day, str):
        try:
            return dt.date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"day {day!r} is not an ISO date (YYYY-MM-DD)") from None
    return pd.Timestamp(day).date()


def load_report_data(db: Database, portfolio_id: str, day: dt.date | str | None = None) -> ReportData:
    """Read everything the report shows. ValueError for an unknown portfolio or one without snapshots.

    `day` None means the latest snapshot; a day without a snapshot (a weekend, a holiday) means the
    latest snapshot on or before it ("as of"). Nothing after that date is read.
    """
    portfolio = db.read("portfolios", {"portfolio_id": portfolio_id})
    if portfolio.empty:
        known = db.read("portfolios", columns=["portfolio_id"])["portfolio_id"].tolist()
        hint = f"known portfolios: {', '.join(known)}" if known else "no portfolio has been imported yet"
        raise ValueError(f"unknown portfolio {portfolio_id!r} ({hint})")
    wanted = _as_date(day)
    history = db.read("portfolio_snapshots", {"portfolio_id": portfolio_id, "date": (None, wanted)})
    if history.empty:
        when = f" on or before {wanted}" if wanted else ""
        raise ValueError(
            f"portfolio {portfolio_id!r} has no snapshots{when}: materialize it first "
            f"(factor-platform materialize --start ... --end ... --portfolio {portfolio_id})"
        )
    history = history.sort_values("date", ignore_index=True)
    as_of = pd.Timestamp(history["date"].iloc[-1]).date()
    on_day = {"portfolio_id": portfolio_id, "date": as_of}

    values = db.read("position_values", on_day)
    book = read_book(db, portfolio_id)
    positions = book.positions
    held = values.merge(positions.drop(columns=["portfolio_id"]), on="position_id", how="left")
    profiles = db.read("company_profiles", {"symbol": book.held_symbols}, columns=["symbol", "sector"])
    # The sector weights' rule: the position's own sector, else its (underlying's) profile.
    sectors = position_sectors(positions, dict(zip(profiles["symbol"], profiles["sector"])))
    held["sector_shown"] = held["position_id"].map(sectors)
    held = held.reindex(held["exposure"].abs().sort_values(ascending=False, kind="mergesort").index)

    return ReportData(
        portfolio=portfolio.iloc[0],
        day=as_of,
        history=history,
        factors=db.read("portfolio_factor_exposures", on_day),
        sectors=db.read("portfolio_sector_weights", on_day).sort_values("weight", ascending=False, ignore_index=True),
        stress=db.read("stress_results", on_day).sort_values(["pnl", "scenario"], ignore_index=True),
        risk=db.read("portfolio_risk", on_day),
        correlations=db.read("portfolio_correlations", on_day),
        positions=held.reset_index(drop=True),
        corporate_actions=_corporate_actions(db, held, as_of),
        scenario_descriptions=_scenario_descriptions(),
        factor_order=_factor_order(),
    )


def _corporate_actions(db: Database, held: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Splits and dividends of the symbols held on `day` (public holdings, option underlyings) dated in
    (day - 1 year, day], newest first; columns date, symbol, kind, value, source."""
    market = held[held["investment_class"].isin(["PUBLIC", "OPTIONS"])]
    symbols = sorted({s for s in pricing_symbols(market) if isinstance(s, str)})
    since = (pd.Timestamp(day) - ACTIONS_LOOKBACK + pd.Timedelta(days=1)).date()
    actions = db.read(
        "corporate_actions",
        {"symbol": symbols, "date": (since, day)},
        columns=["date", "symbol", "kind", "value", "source"],
    )
    return actions.sort_values(["date", "symbol", "kind"], ascending=[False, True, True], ignore_index=True)


def _scenario_descriptions() -> dict[str, str]:
    """Descriptions of the configured scenarios; the report still renders without them."""
    try:
        from factor_platform.domain.stress_scenarios import load_stress_scenarios

        return {s.name: s.description for s in load_stress_scenarios()}
    except (OSError, ValueError):
        return {}


def _factor_order() -> list[str]:
    """Factors in their definition order (a stable profile across reports); unknown ones go last."""
    try:
        from factor_platform.domain.factor_models import factor_names, load_regressions

        return factor_names(load_regressions())
    except (OSError, ValueError):
        return []


def ordered_factors(factors: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(order)}
    key = factors["factor"].map(lambda f: (rank.get(f, len(rank)), f))
    return factors.iloc[sorted(range(len(factors)), key=lambda i: key.iloc[i])].reset_index(drop=True)


def correlation_clusters(correlations: pd.DataFrame) -> list[tuple[int, list[str], float]]:
    """(cluster id, its symbols, mean rho of its strong pairs) for each cluster, biggest first."""
    strong = correlations.dropna(subset=["cluster"])
    out = []
    for cluster, rows in strong.groupby("cluster"):
        symbols = sorted(set(rows["symbol_a"]) | set(rows["symbol_b"]))
        out.append((int(cluster), symbols, float(rows["rho"].mean())))
    return sorted(out, key=lambda c: (-len(c[1]), c[0]))
