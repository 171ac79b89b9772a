"""Valuation of positions and daily P&L snapshots of a portfolio (contract §4).

Two steps, both pure numpy/pandas:

1. :func:`value_positions` marks every position on every session on which it counts.
2. :func:`snapshots` turns those marks into daily P&L and one portfolio snapshot per session from inception.

Sign conventions: signed quantity = +quantity for LONG, LC, LP and −quantity for SHORT, SC, SP; the
contract multiplier is 100 for OPTIONS and 1 otherwise. Money is in the portfolio's currency; prices are
per share / per unit of underlying (per option, not per contract).

A position *counts* on session d when ``entry_date <= d`` and (``exit_date`` is NaT or ``d < exit_date``):
an entry date that is not a session counts from the next session, and the position stops counting on the
first session on or after its exit date, the *closing session*, on which its exit P&L is booked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from factor_platform.calc.corporate_actions import dividend_events
from factor_platform.calc.options import VOL_WINDOW, black_scholes, rolling_realized_volatility, year_fraction
from factor_platform.calc.returns import check_dates, check_wide_frame
from factor_platform.domain.positions import OPTION_MULTIPLIER, OPTION_POSITION_TYPES, SIGN, normalize_positions

VALUE_COLUMNS = [
    "position_id",
    "date",
    "price",
    "market_value",
    "exposure",
    "delta",
    "price_source",
    "has_price",
    "underlying_price",
]
SNAPSHOT_COLUMNS = [
    "date",
    "equity",
    "cash",
    "long_exposure",
    "short_exposure",
    "gross_exposure",
    "net_exposure",
    "daily_pnl",
    "daily_return",
    "cumulative_pnl",
    "n_positions",
    "is_complete",
    "missing_symbols",
]
PNL_COLUMNS = ["position_id", "date", "pnl", "event"]
# price_source labels, indexed by the codes value_positions assigns.
PRICE_SOURCES = np.array(["stale", "market", "model", "manual"], dtype=object)
_STALE, _MARKET, _MODEL, _MANUAL = range(4)


def signed_quantity(positions: pd.DataFrame) -> np.ndarray:
    """+quantity for LONG, LC, LP; −quantity for SHORT, SC, SP (float64, one per row)."""
    return positions["position_type"].map(SIGN).to_numpy(np.float64) * positions["quantity"].to_numpy(np.float64)


def multiplier(positions: pd.DataFrame) -> np.ndarray:
    """100 for OPTIONS, 1 otherwise (float64, one per row)."""
    return np.where(positions["investment_class"].to_numpy() == "OPTIONS", OPTION_MULTIPLIER, 1.0)


def pricing_symbols(positions: pd.DataFrame) -> np.ndarray:
    """The symbol whose price moves the position: the underlying for OPTIONS, the own symbol otherwise."""
    options = positions["investment_class"].to_numpy() == "OPTIONS"
    return np.where(options, positions["underlying"].to_numpy(object), positions["symbol"].to_numpy(object))


@dataclass(frozen=True)
class PreparedPositions:
    """A positions frame validated once: ``frame`` = :func:`normalize_positions` of it, ``attributes`` = its
    :func:`position_attributes`. The valuation, the P&L and the risk functions take one wherever they take a
    positions frame, so that the steps over one portfolio do not each normalize the same positions again."""

    frame: pd.DataFrame
    attributes: pd.DataFrame

    def __getitem__(self, key):
        """A column (or columns) of the normalized frame, as the positions frame it stands for."""
        return self.frame[key]


def prepare_positions(positions: pd.DataFrame | PreparedPositions) -> PreparedPositions:
    """``positions`` normalized, with their attributes (a PreparedPositions is returned as it is)."""
    if isinstance(positions, PreparedPositions):
        return positions
    pos = normalize_positions(positions)
    sector = pos["sector"].where(pos["sector"].map(lambda s: isinstance(s, str) and s.strip() != ""), None)
    attributes = pd.DataFrame(
        {
            "investment_class": pos["investment_class"].to_numpy(object),
            "signed_quantity": signed_quantity(pos),
            "multiplier": multiplier(pos),
            "pricing_symbol": pricing_symbols(pos),
            "sector": sector.to_numpy(object),
        },
        index=pd.Index(pos["position_id"], name="position_id"),
    )
    return PreparedPositions(pos, attributes)


def position_attributes(positions: pd.DataFrame | PreparedPositions) -> pd.DataFrame:
    """Per position (index ``position_id``): investment_class, signed_quantity, multiplier, pricing_symbol
    (:func:`pricing_symbols`) and the position's own sector (None when blank)."""
    return prepare_positions(positions).attributes


def _coefficients(prepared: PreparedPositions) -> np.ndarray:
    """signed quantity × multiplier per position: money per unit of price."""
    attributes = prepared.attributes
    return attributes["signed_quantity"].to_numpy() * attributes["multiplier"].to_numpy()


def _counting_bounds(pos: pd.DataFrame, sessions: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Session index range [start, end) on which each position counts; ``end`` is its closing session
    (``len(sessions)`` when it has no exit or closes after the last session)."""
    start = sessions.searchsorted(pos["entry_date"].to_numpy(), side="left")
    exit_dates = pos["exit_date"].to_numpy()
    end = np.full(len(pos), len(sessions), dtype=np.int64)
    has_exit = ~np.isnat(exit_dates)
    end[has_exit] = sessions.searchsorted(exit_dates[has_exit], side="left")
    return start, end


def _columns(frame: pd.DataFrame, names: list) -> np.ndarray:
    """``frame.reindex(columns=names).to_numpy()``: the values of the named columns (NaN for a name that is
    not a column), without building the frame."""
    at = frame.columns.get_indexer(names)
    values = np.full((len(frame), len(at)), np.nan)
    values[:, at >= 0] = frame.to_numpy(np.float64)[:, at[at >= 0]]
    return values


def _ffill(values: np.ndarray) -> np.ndarray:
    """Each NaN replaced by the last non-NaN value above it in its column (``DataFrame.ffill``); NaN above
    the first value."""
    last = np.where(np.isnan(values), 0, np.arange(len(values))[:, None])
    np.maximum.accumulate(last, axis=0, out=last)
    return values[last, np.arange(values.shape[1])[None, :]]


def value_positions(
    positions: pd.DataFrame | PreparedPositions,
    prices: pd.DataFrame,
    sessions,
    *,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
    vol_window: int = VOL_WINDOW,
    vol_min_obs: int | None = None,
    returns_from: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mark every position on every session on which it counts.

    Args:
        positions: the contract's positions columns (see :func:`normalize_positions`), or
            :func:`prepare_positions` of them.
        prices: wide frame of P (adj_close else close), index = sessions, columns = symbols (PUBLIC
            symbols, option underlyings, and option contract symbols where the source has a contract price);
            NaN = no price that day. Rows not in ``sessions`` are ignored; a symbol absent is never priced.
        sessions: the exchange sessions to value on, ascending. For options, include at least
            ``vol_window`` sessions of underlying history before the first date you need (the realized
            volatility counts returns inside this range only).
        returns_from: the total-return prices P whose returns give an underlying's realized volatility
            (contract §4), when ``prices`` are closes that drop on ex-dates; default ``prices``.
        rate, dividend_yield: Black–Scholes r and q (continuous, annual).
        vol_window, vol_min_obs: realized-volatility window in returns (63) and the fewest returns accepted
            (default: the whole window); with fewer, an option has no model price that day.

    Returns:
        One row per (position, session it counts on), sorted by date then by the positions' order:

        - ``price``: PUBLIC P_d; OPTIONS the contract's own price on d when ``prices`` has it
          (``price_source`` "market"), else Black–Scholes on the underlying's P_d with σ its realized
          volatility (``"model"``); PRIVATE ``manual_market_value / quantity`` (``"manual"``).
          Without a price on d: the position's last price since entry, or ``entry_price`` before its
          first price (``price_source`` "stale", ``has_price`` False).
        - ``market_value`` = signed qty × multiplier × price.
        - ``delta``: 1 for PUBLIC and PRIVATE; the Black–Scholes delta for OPTIONS (also when the price is
          the contract's own), carried from the last day it could be computed when the underlying has no
          price or volatility on d; NaN if it never could.
        - ``exposure``: market_value for PUBLIC and PRIVATE; signed qty × 100 × delta × underlying_price for
          OPTIONS (NaN only when delta is NaN).
        - ``underlying_price``: P of the underlying for OPTIONS (last known when missing on d), the own
          P for PUBLIC, NaN for PRIVATE.
        - ``has_price``: the position was priced on d itself.

        Expired options keep counting until their exit date, valued at intrinsic on the day's underlying
        price (contract §4); set ``exit_date``/``exit_price`` at expiry to settle them.
    """
    prepared = prepare_positions(positions)
    pos = prepared.frame
    sessions = check_dates(sessions)
    check_wide_frame(prices, name="prices")
    wide = prices.set_axis(prices.index.as_unit("ns")).reindex(sessions).astype(np.float64)
    n_sessions, n_positions = len(sessions), len(pos)

    start, end = _counting_bounds(pos, sessions)
    row = np.arange(n_sessions)[:, None]
    counts = (row >= start[None, :]) & (row < end[None, :])

    cls = pos["investment_class"].to_numpy()
    mark = np.full((n_sessions, n_positions), np.nan)
    source = np.full((n_sessions, n_positions), _STALE, dtype=np.int8)
    delta = np.full((n_sessions, n_positions), np.nan)
    underlying = np.full((n_sessions, n_positions), np.nan)

    public = np.flatnonzero(cls == "PUBLIC")
    if len(public):
        p = _columns(wide, pos["symbol"].iloc[public].tolist())
        mark[:, public] = p
        source[:, public] = _MARKET
        delta[:, public] = 1.0
        underlying[:, public] = p

    private = np.flatnonzero(cls == "PRIVATE")
    if len(private):
        per_unit = (pos["manual_market_value"].to_numpy() / pos["quantity"].to_numpy())[private]
        mark[:, private] = per_unit[None, :]
        source[:, private] = _MANUAL
        delta[:, private] = 1.0

    options = np.flatnonzero(cls == "OPTIONS")
    if len(options):
        opt = pos.iloc[options]
        names = opt["underlying"].tolist()
        spot = _columns(wide, names)
        present = sorted(set(names) & set(wide.columns))
        history = (
            wide
            if returns_from is None
            else returns_from.set_axis(returns_from.index.as_unit("ns"))
            .reindex(index=sessions, columns=wide.columns)
            .astype(np.float64)
        )
        vols = rolling_realized_volatility(history[present], window=vol_window, min_obs=vol_min_obs)
        sigma = _columns(vols, names)
        years = year_fraction(sessions.to_numpy()[:, None], opt["expiration"].to_numpy()[None, :])
        is_call = (opt["position_type"].map(OPTION_POSITION_TYPES) == "CALL").to_numpy()[None, :]
        model, model_delta = black_scholes(
            spot,
            opt["strike"].to_numpy()[None, :],
            years,
            sigma,
            is_call=is_call,
            rate=rate,
            dividend_yield=dividend_yield,
        )
        contract = _columns(wide, opt["symbol"].tolist())
        has_contract = ~np.isnan(contract)
        mark[:, options] = np.where(has_contract, contract, model)
        source[:, options] = np.where(has_contract, _MARKET, np.where(np.isnan(model), _STALE, _MODEL))
        delta[:, options] = model_delta
        underlying[:, options] = spot

    # Only what happens while a position counts is its own; "last price" means since entry.
    mark[~counts] = np.nan
    has_price = counts & ~np.isnan(mark)
    source[~has_price] = _STALE
    entry_price = pos["entry_price"].to_numpy()
    price = _ffill(mark)
    price = np.where(np.isnan(price), entry_price[None, :], price)
    delta[~counts] = np.nan
    delta = _ffill(delta)
    underlying[~counts] = np.nan
    underlying = _ffill(underlying)

    sq_mult = _coefficients(prepared)[None, :]
    market_value = sq_mult * price
    exposure = np.where((cls == "OPTIONS")[None, :], sq_mult * delta * underlying, market_value)

    t_idx, p_idx = np.nonzero(counts)
    return pd.DataFrame(
        {
            "position_id": pos["position_id"].to_numpy()[p_idx],
            "date": sessions[t_idx],
            "price": price[t_idx, p_idx],
            "market_value": market_value[t_idx, p_idx],
            "exposure": exposure[t_idx, p_idx],
            "delta": delta[t_idx, p_idx],
            "price_source": PRICE_SOURCES[source[t_idx, p_idx]],
            "has_price": has_price[t_idx, p_idx],
            "underlying_price": underlying[t_idx, p_idx],
        },
        columns=VALUE_COLUMNS,
    )


def _position_pnl(prepared: PreparedPositions, values: pd.DataFrame, sessions: pd.DatetimeIndex) -> pd.DataFrame:
    """Daily P&L of each position (contract §4), from the marks of :func:`value_positions`.

    With R the position's reference price, ``entry_price`` at first and then its last price on a day it
    had one, each event books signed qty × multiplier × (new price − R):

    - ``open`` (first session it counts) and ``hold`` (later sessions): new price = the day's price, so
      opened on d books P_d − entry_price and held books P_d − P_prev, P_prev the last price before d
      (after a gap the first priced day books the whole move). A day without a price books 0.
    - ``close`` (closing session, the first session ≥ exit_date): new price = exit_price.
    - ``open_close`` (never counted: exit on the entry session or before the next one): exit_price −
      entry_price, booked once on the closing session.

    A missing ``exit_price`` books 0 on the closing session (valued at R). Closing sessions after the last
    of ``sessions`` are not booked. Returns [position_id, date, pnl, event], sorted by date then position.
    """
    pos = prepared.frame
    coef = _coefficients(prepared)
    entry = pos["entry_price"].to_numpy()

    marks = values
    if not marks["date"].is_monotonic_increasing:
        marks = marks.sort_values("date", kind="stable")
    k = prepared.attributes.index.get_indexer(marks["position_id"])
    if (k < 0).any():
        raise ValueError("values holds positions that are not in positions")
    price = marks["price"].to_numpy(np.float64)
    # Rows of one position together, in date order: the previous row is the previous mark.
    by_position = np.argsort(k, kind="stable")
    k_sorted, price_sorted = k[by_position], price[by_position]
    starts = np.ones(len(k), dtype=bool)
    starts[1:] = k_sorted[1:] != k_sorted[:-1]
    ends = np.ones(len(k), dtype=bool)
    ends[:-1] = starts[1:]
    previous_sorted = np.empty_like(price_sorted)
    previous_sorted[1:] = price_sorted[:-1]
    previous_sorted[starts] = entry[k_sorted[starts]]
    first = np.empty_like(starts)
    first[by_position] = starts
    previous = np.empty_like(price)
    previous[by_position] = previous_sorted
    last_price = np.full(len(pos), np.nan)
    last_price[k_sorted[ends]] = price_sorted[ends]

    _, end = _counting_bounds(pos, sessions)
    closed = np.flatnonzero(~np.isnat(pos["exit_date"].to_numpy()) & (end < len(sessions)))
    counted = ~np.isnan(last_price[closed])
    reference = np.where(counted, last_price[closed], entry[closed])
    exit_price = pos["exit_price"].to_numpy()[closed]

    k_all = np.concatenate([k, closed])
    dates = np.concatenate([marks["date"].to_numpy().astype("datetime64[ns]"), sessions.to_numpy()[end[closed]]])
    pnl = np.concatenate(
        [coef[k] * (price - previous), np.where(np.isnan(exit_price), 0.0, coef[closed] * (exit_price - reference))]
    )
    event = np.concatenate(
        [np.where(first, "open", "hold").astype(object), np.where(counted, "close", "open_close").astype(object)]
    )
    order = np.lexsort((k_all, dates))
    return pd.DataFrame(
        {
            "position_id": pos["position_id"].to_numpy()[k_all[order]],
            "date": dates[order],
            "pnl": pnl[order],
            "event": event[order],
        },
        columns=PNL_COLUMNS,
    )


def snapshots(
    positions: pd.DataFrame | PreparedPositions,
    values: pd.DataFrame,
    sessions,
    *,
    starting_equity: float,
    inception_date,
    dividends: pd.DataFrame | None = None,
    carried_pnl: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One portfolio snapshot per session from inception, and the per-position P&L behind it.

    To roll forward from a stored snapshot instead of from the real inception, pass the session after it as
    ``inception_date`` and its ``cumulative_pnl`` as ``carried_pnl``: the figures are those of the whole roll
    (the same sums in the same order) as long as ``sessions`` hold each counting position's last price before.

    Args:
        positions: as given to :func:`value_positions`.
        values: the output of :func:`value_positions` over the same ``sessions``.
        sessions: ascending sessions; must cover inception to the last date wanted (earlier ones are
            allowed and used only as history).
        starting_equity: equity at inception (money).
        inception_date: the first snapshot is on the first session on or after it.
        carried_pnl: cumulative P&L before ``inception_date`` (0 at the real inception).
        dividends: cash dividends per share on the prices' basis (long: symbol, date = ex-date, value),
            booked as ``dividend`` events (see ``calc.corporate_actions.dividend_events``).

    Returns:
        ``(snapshots, pnl)``.

        ``snapshots``: one row per session from inception (also after every position has closed), columns
        date, equity, cash, long_exposure, short_exposure, gross_exposure, net_exposure, daily_pnl,
        daily_return, cumulative_pnl, n_positions, is_complete, missing_symbols:

        - ``daily_pnl`` = Σ of the day's ``_position_pnl`` events and dividends; ``cumulative_pnl`` sums them from
          inception (events before it are not counted); ``equity`` = starting_equity + cumulative_pnl.
        - ``daily_return`` = daily_pnl / previous equity (starting_equity on the first day); NaN when
          that equity is 0.
        - long/short_exposure = Σ of positive / negative ``exposure`` of the positions counting that day
          (market value for non-options, delta-adjusted for options; NaN exposures are left out);
          gross = long + |short|; net = long + short; cash = equity − net.
        - ``n_positions``: positions counting that day, priced or not.
        - ``is_complete``: False when a counting position has no price that day or a position closes that
          day without an exit_price; ``missing_symbols`` lists their pricing symbols (the underlying for
          options), sorted.

        ``pnl``: ``_position_pnl`` restricted to sessions from inception.
    """
    sessions = check_dates(sessions)
    prepared = prepare_positions(positions)
    pos, attributes = prepared.frame, prepared.attributes
    first = sessions.searchsorted(pd.Timestamp(inception_date).normalize(), side="left")
    n_sessions = len(sessions)
    dates = sessions[first:]
    inception = dates[0] if len(dates) else pd.Timestamp.max

    pnl = _position_pnl(prepared, values, sessions)
    if dividends is not None and len(dividends):
        cash = dividend_events(pos, dividends, attributes["signed_quantity"].to_numpy())
        on = sessions.searchsorted(cash["date"].to_numpy(), side="left")  # an ex-date off-calendar: the next session
        cash = cash.loc[on < n_sessions].assign(date=sessions[on[on < n_sessions]])
        pnl = pd.concat([pnl, cash], ignore_index=True).sort_values("date", kind="stable")
    pnl = pnl.loc[pnl["date"] >= inception].reset_index(drop=True)

    # Sums per session by position in `sessions` (bincount), then the sessions from inception on.
    t_value = sessions.get_indexer(values["date"])
    if (t_value < 0).any():
        raise ValueError("values has dates that are not in sessions")
    exposure = values["exposure"].to_numpy(np.float64)  # NaN exposures fall out of both sums
    long_exposure = np.bincount(t_value, np.where(exposure > 0, exposure, 0.0), n_sessions)[first:]
    short_exposure = np.bincount(t_value, np.where(exposure < 0, exposure, 0.0), n_sessions)[first:]
    n_positions = np.bincount(t_value, minlength=n_sessions)[first:].astype(np.int64)
    daily_pnl = np.bincount(sessions.get_indexer(pnl["date"]), pnl["pnl"].to_numpy(), n_sessions)[first:]

    # Unpriced positions, and closes without an exit price, by their pricing symbol.
    symbol_of = dict(zip(pos["position_id"], attributes["pricing_symbol"]))
    no_exit = set(pos["position_id"].to_numpy(object)[np.isnan(pos["exit_price"].to_numpy())])
    unpriced = ~values["has_price"].to_numpy(bool)
    closes = pnl["event"].isin(["close", "open_close"]).to_numpy() & pnl["position_id"].isin(no_exit).to_numpy()
    missing: dict[int, set] = {}
    for t, pid in zip(
        np.r_[t_value[unpriced], sessions.get_indexer(pnl["date"][closes])],
        values["position_id"].to_numpy(object)[unpriced].tolist()
        + pnl["position_id"].to_numpy(object)[closes].tolist(),
    ):
        if t >= first:
            missing.setdefault(t - first, set()).add(symbol_of[pid])
    missing_symbols = [sorted(missing.get(t, ())) for t in range(len(dates))]

    cumulative = np.cumsum(np.concatenate([[float(carried_pnl)], daily_pnl]))
    equity = float(starting_equity) + cumulative
    previous_equity, equity, cumulative = equity[:-1], equity[1:], cumulative[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        daily_return = np.where(previous_equity != 0, daily_pnl / previous_equity, np.nan)
    net = long_exposure + short_exposure
    snaps = pd.DataFrame(
        {
            "date": dates,
            "equity": equity,
            "cash": equity - net,
            "long_exposure": long_exposure,
            "short_exposure": short_exposure,
            "gross_exposure": long_exposure - short_exposure,
            "net_exposure": net,
            "daily_pnl": daily_pnl,
            "daily_return": daily_return,
            "cumulative_pnl": cumulative,
            "n_positions": n_positions,
            "is_complete": np.array([not m for m in missing_symbols], dtype=bool),
            "missing_symbols": missing_symbols,
        },
        columns=SNAPSHOT_COLUMNS,
    )
    return snaps, pnl
