"""Black–Scholes prices and deltas of European calls and puts, and the realized volatility that feeds them.

Conventions (contract §4):

- ``years`` = calendar days from the valuation date to expiration / 365 (:func:`year_fraction`).
- ``sigma`` = annualized volatility: sample std (ddof=1) of the underlying's last 63 daily simple
  returns × √252 (:func:`rolling_realized_volatility`).
- ``rate`` (continuously compounded risk-free rate) and ``dividend_yield`` (continuous) default to 0.
- On and after expiration (``years <= 0``) the value is intrinsic, ``max(S − K, 0)`` for a call and
  ``max(K − S, 0)`` for a put, and delta is +1 for a call in the money (S > K), −1 for a put in the money
  (S < K), 0 otherwise (at the money included).
- Before expiration with ``sigma == 0`` the price is the discounted forward's intrinsic value
  (the limit of the formula as σ → 0) and delta is ``e^{−qT}`` (call) / ``−e^{−qT}`` (put) when that
  forward is in the money, 0 otherwise.

Prices are per unit of underlying (no contract multiplier); deltas are ∂price/∂spot per unit.
All functions broadcast over numpy arrays; NaN in any input gives NaN in the output (except that
``sigma`` is not needed on and after expiration).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from factor_platform.calc.returns import simple_returns

TRADING_DAYS_PER_YEAR = 252
DAYS_PER_YEAR = 365.0
VOL_WINDOW = 63


def year_fraction(valuation_dates, expirations) -> np.ndarray:
    """Calendar days from each valuation date to its expiration, divided by 365 (negative after expiry).

    Both arguments are anything ``pd.to_datetime`` / numpy datetime64 accepts and broadcast together;
    NaT gives NaN.
    """
    start = np.asarray(valuation_dates, dtype="datetime64[D]")
    end = np.asarray(expirations, dtype="datetime64[D]")
    days = (end - start).astype("timedelta64[D]")
    out = days.astype(np.float64)
    out[np.isnat(days)] = np.nan
    return out / DAYS_PER_YEAR


def black_scholes(
    spot,
    strike,
    years,
    sigma,
    *,
    is_call,
    rate: float = 0.0,
    dividend_yield: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Black–Scholes (Merton, continuous dividend yield) price and delta of European options.

    Args:
        spot: underlying price S (≥ 0), array-like.
        strike: strike K (> 0), array-like.
        years: time to expiration T in years (calendar days / 365); ``T <= 0`` means expired.
        sigma: annualized volatility σ (≥ 0); not used where ``T <= 0``.
        is_call: bool array-like, True for calls, False for puts.
        rate: continuously compounded risk-free rate r (default 0).
        dividend_yield: continuous dividend yield q (default 0).

    Returns:
        ``(price, delta)``, float64 arrays of the broadcast shape. For T > 0 and σ > 0::

            d1 = (ln(S/K) + (r − q + σ²/2) T) / (σ √T),   d2 = d1 − σ √T
            call = S e^{−qT} N(d1) − K e^{−rT} N(d2),   delta = e^{−qT} N(d1)
            put  = K e^{−rT} N(−d2) − S e^{−qT} N(−d1), delta = −e^{−qT} N(−d1)

        For T <= 0: intrinsic value and delta ±1 in the money, 0 otherwise (see the module docstring).

    Raises:
        ValueError: a strike ≤ 0, a negative spot or a negative sigma (NaN is allowed and propagates).
    """
    S, K, T, vol, call = np.broadcast_arrays(
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(years, dtype=np.float64),
        np.asarray(sigma, dtype=np.float64),
        np.asarray(is_call, dtype=bool),
    )
    if np.any(K <= 0):
        raise ValueError("black_scholes: strike must be > 0")
    if np.any(S < 0):
        raise ValueError("black_scholes: spot must be >= 0")
    if np.any(vol < 0):
        raise ValueError("black_scholes: sigma must be >= 0")

    price = np.full(S.shape, np.nan)
    delta = np.full(S.shape, np.nan)

    expired = T <= 0
    if expired.any():
        s, k, c = S[expired], K[expired], call[expired]
        price[expired] = np.where(c, np.maximum(s - k, 0.0), np.maximum(k - s, 0.0))
        itm_delta = np.where(c, np.where(s > k, 1.0, 0.0), np.where(s < k, -1.0, 0.0))
        delta[expired] = np.where(np.isnan(s), np.nan, itm_delta)

    live = T > 0  # False for NaN T as well
    if live.any():
        s, k, t, v, c = S[live], K[live], T[live], vol[live], call[live]
        spot_disc = s * np.exp(-dividend_yield * t)
        strike_disc = k * np.exp(-rate * t)
        vol_sqrt_t = v * np.sqrt(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            d1 = (np.log(s / k) + (rate - dividend_yield + 0.5 * v * v) * t) / vol_sqrt_t
        d2 = d1 - vol_sqrt_t
        carry = np.exp(-dividend_yield * t)
        p = np.where(
            c,
            spot_disc * ndtr(d1) - strike_disc * ndtr(d2),
            strike_disc * ndtr(-d2) - spot_disc * ndtr(-d1),
        )
        d = np.where(c, carry * ndtr(d1), -carry * ndtr(-d1))
        # σ√T = 0: the formula's limit is the discounted forward's intrinsic value.
        flat = (vol_sqrt_t == 0) & ~np.isnan(s)
        if flat.any():
            fwd_call = spot_disc[flat] - strike_disc[flat]
            cf = c[flat]
            p[flat] = np.where(cf, np.maximum(fwd_call, 0.0), np.maximum(-fwd_call, 0.0))
            d[flat] = np.where(cf, np.where(fwd_call > 0, carry[flat], 0.0), np.where(fwd_call < 0, -carry[flat], 0.0))
        price[live] = p
        delta[live] = d
    return price, delta


def rolling_realized_volatility(
    prices: pd.DataFrame, *, window: int = VOL_WINDOW, min_obs: int | None = None
) -> pd.DataFrame:
    """Annualized realized volatility of each symbol of a wide price frame, as of every row.

    The value at (d, s) is the sample std (ddof=1) of the last ``window`` daily simple returns of ``s``
    up to and including d, × √252. Returns are :func:`factor_platform.calc.returns.simple_returns`
    (``P_d / P_prev − 1``, ``prev`` the previous row with a price), and the window counts returns, so a
    missing day does not shorten it. NaN where ``s`` has no return on d (no price that day, or its first
    price) and where fewer than ``min_obs`` (default ``window``) returns exist.

    Args:
        prices: wide P frame, index = sessions ascending, columns = symbols; prices > 0.
    """
    if window < 2:
        raise ValueError(f"window={window} must be >= 2")
    min_obs = window if min_obs is None else min_obs
    if not 2 <= min_obs <= window:
        raise ValueError(f"min_obs={min_obs} must be in [2, window={window}]")
    returns = simple_returns(prices)
    out = pd.DataFrame(np.nan, index=prices.index, columns=prices.columns, dtype=np.float64)
    for position, _column in enumerate(prices.columns):
        series = returns.iloc[:, position].dropna()
        if len(series) < min_obs:
            continue
        vol = _window_std(series.to_numpy(np.float64), window, min_obs) * np.sqrt(TRADING_DAYS_PER_YEAR)
        out.iloc[prices.index.get_indexer(series.index), position] = vol
    return out


def _window_std(values: np.ndarray, window: int, min_obs: int) -> np.ndarray:
    """std(ddof=1) of the last `window` values up to each one (at least `min_obs`), each computed from its
    own window alone: unlike a running sum (pandas' rolling), the figure of a day does not depend on how far
    back the series starts, so a run that reads less history gives the same bits."""
    out = np.full(len(values), np.nan)
    for end in range(min_obs, min(window, len(values) + 1)):
        out[end - 1] = values[:end].std(ddof=1)
    if len(values) >= window:
        windows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(values, window))
        out[window - 1 :] = windows.std(axis=1, ddof=1)
    return out
