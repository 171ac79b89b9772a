r"""The ``sample`` source: offline, deterministic prices from a documented factor model.

Any symbol gets prices; a test (or a curious user) can check that the platform recovers the
model's true betas. Nothing here touches the network or the clock (except the default ``as_of``
of :meth:`SampleSource.fetch_fundamentals`).

Sessions and determinism
------------------------
Prices exist on every session of the source's exchange calendar (default XNYS) from
``ORIGIN`` = 2000-01-03 to the calendar's last known session. Random draws come from a
``numpy.random.Generator`` (PCG64) seeded from SHA-256 of a fixed string and the symbol -- never
Python's ``hash()`` -- as one sequential stream whose k-th draw belongs to the *calendar day*
``ORIGIN + k`` (weekends and holidays included, their draws unused). The stream is generated from
ORIGIN up to the calendar's last session; a longer calendar only appends draws. So the value of a
(symbol, date) is the same whatever range is requested, in any process, on any machine.
Seeds: ``int.from_bytes(SHA-256(text), "big")`` with text ``"factor_platform.sample:factor-etfs"``
for the ETF draws and ``"factor_platform.sample:<SYMBOL>:returns"`` for a symbol's own draws.
Prices are not rounded, so the returns computed from them are the model's returns exactly.

The factor ETFs (``FACTOR_ETFS``: SPY, TLT, VTV, VUG, MTUM, QUAL, IWM, USMV)
----------------------------------------------------------------------------
Daily simple returns ``r_e,k = mu_e + sigma_e * z_e,k`` with ``z_k`` multivariate normal, unit
variances, iid over days, built from 8 independent N(0, 1) draws per day
``(x_SPY, x_TLT, u_VTV, u_VUG, u_MTUM, u_QUAL, u_IWM, u_USMV)``:

- ``z_SPY = x_SPY``;  ``z_TLT = x_TLT`` (so corr(SPY, TLT) = 0 and corr(TLT, any style ETF) = 0);
- style ETF e: ``z_e = rho_e * z_SPY + sqrt(1 - rho_e^2) * w_e``, where ``w = L u`` and ``L L' =``
  ``STYLE_CORRELATION`` (correlations of the ETFs' own style components).

Hence corr(e, f) = rho_e rho_f + sqrt(1-rho_e^2) sqrt(1-rho_f^2) STYLE_CORRELATION[e, f];
:func:`etf_correlation` / :func:`etf_covariance` return the exact matrices.

====== ============ ============== =====================
ETF    sigma_e/day  mu_e/day       rho_e = corr with SPY
====== ============ ============== =====================
SPY    1.10 %       0.040 %        1
TLT    0.90 %       0.010 %        0
VTV    1.00 %       0.035 %        0.92
VUG    1.30 %       0.045 %        0.93
MTUM   1.20 %       0.045 %        0.88
QUAL   1.10 %       0.040 %        0.95
IWM    1.40 %       0.035 %        0.85
USMV   0.80 %       0.030 %        0.86
====== ============ ============== =====================

Style-component correlations: VTV-VUG -0.6, VUG-MTUM 0.4, QUAL-USMV 0.3, VTV-IWM 0.3,
MTUM-QUAL 0.2, all others 0.

Every other symbol s
--------------------
::

    r_s,k = alpha_s + market_beta_s * r_SPY,k + ir_beta_s * r_TLT,k + IDIO_VOL * eps_s,k,
    eps_s,k iid N(0, 1),  IDIO_VOL = 0.6 % per day

with parameters from ``h = SHA-256("factor_platform.sample:" + symbol)`` read as four big-endian
64-bit words ``w0..w3`` and ``u_i = w_i / 2**64`` in [0, 1):

- ``market_beta = 0.5 + 1.3 u0``   (in [0.5, 1.8))
- ``ir_beta     = -0.6 + 1.2 u1``  (in [-0.6, 0.6))
- ``alpha       = (u2 - 0.5) * 4e-4`` per day
- ``P0          = 20 * 20 ** u3``  (the first price, in [20, 400); also used for ETFs)

:func:`true_betas` returns ``{"market_beta", "ir_beta"}`` and :func:`model_parameters` all of them.
For an ETF the true betas are the population univariate ones: market_beta = rho_e sigma_e /
sigma_SPY (SPY 1, TLT 0) and ir_beta = 0 (TLT 1).

Because TLT is independent of SPY, the contract's univariate OLS (90 returns, intercept) is unbiased
for each beta; its residual holds the other factor, so one window's standard error is about::

    se(market_beta) ~ sqrt(ir_beta^2 sigma_TLT^2 + IDIO_VOL^2) / (sigma_SPY sqrt(90))     (~0.06-0.09)
    se(ir_beta)     ~ sqrt(market_beta^2 sigma_SPY^2 + IDIO_VOL^2) / (sigma_TLT sqrt(90))  (~0.09-0.25)

The tests check every window within 4.5 estimated standard errors of the truth, the mean over
non-overlapping windows within 4 standard errors of the mean, and |mean - true| < 0.05 for
market_beta over 10 years.

Prices
------
The model's ``r`` are *total* returns (so the betas above hold for every symbol). A symbol without
corporate actions trades at ``close_d = P0 * prod(1 + r_k)`` over the sessions after the first one
up to d (the first session's close is P0); ``adj_close = close``. With ``sigma_s`` the model's daily
vol of the symbol and ``v1..v4`` counter-based uniforms in [0, 1) of (symbol, day) (SplitMix64)::

    open   = close_prev * (1 + 0.5 sigma_s (2 v1 - 1))      (close_prev = close on the first session)
    high   = max(open, close) * (1 + sigma_s v2)
    low    = min(open, close) * (1 - sigma_s v3)
    volume = max(1, round(V_s * (0.5 + v4) * (1 + 10 |r_d|) * S_all / S(d)))

``V_s`` = 10**(5 + 2.5 u) shares for a stock, 10**(7 + u) for an ETF (u from the profile hash);
``S_all / S(d)`` is 1 without splits (below).

Corporate actions (``SAMPLE_SPLITS``, ``SAMPLE_DIVIDEND_YIELDS``)
----------------------------------------------------------------
- Splits: NVDA 4:1 (value 4.0) on the first session on or after 2026-06-10; SPLITCO 1:10
  (value 0.1) on the first session on or after 2026-03-16.
- Cash dividends: on the first session on or after the 15th of March, June, September and
  December of every year from ORIGIN on, a yield ``y`` per ex-date of KO 0.75 %, PG 0.6 %,
  JNJ 0.7 %, DIVCO 2 %.

The traded price is ``B_t = B_{t-1} (1 + r_t - y_t) / split_t`` (``y_t`` the yield on an ex-date, else
0; ``split_t`` the ratio on a split session, else 1), ``B`` = P0 on the first session. Prices are
published on one fixed basis, split-adjusted to *all* of the symbol's splits (the list is fixed, so
a (symbol, date) never changes with the requested range or the calendar's length)::

    close_d = B_d * S(d) / S_all      S(d) = product of the split ratios dated <= d, S_all = all of them
    D_e     = y_e * close_{e-1}       the dividend cash per share on that basis, on ex-date e

so ``(close_t + D_t) / close_{t-1} - 1 = r_t`` exactly. open/high/low follow the formulas above on
that basis; ``adj_close`` is NaN for a symbol with dividends (the platform adds ``D`` back to
``close`` on the ex-date), ``close`` otherwise. :func:`traded_price` gives ``B_d`` (what a book pays).

Failures (never fake data)
--------------------------
- Option contracts (OCC symbols such as ``AAPL250117C00150000``, see
  ``factor_platform.domain.symbols.is_option_symbol``): ``"sample source has no option contract prices"``
  -- the caller prices them with its model. Also no profile or fundamentals.
- Symbols matching ``^(?:SAMPLEFAIL|FAIL)[A-Z0-9]*$`` (``FAILCO``, ``SAMPLEFAIL1``) fail deliberately
  in every fetch, for fault tests.
- A range whose sessions are all before ORIGIN: a failure saying so (for prices; there are no
  actions before ORIGIN, which is no failure).
- Fundamentals of a factor ETF: a failure (an ETF has no company fundamentals).

Profiles and fundamentals
-------------------------
Profile: name ``"<SYMBOL> Sample Corp"`` (ETFs ``"<SYMBOL> Sample ETF"``, sector and industry
``"ETF"``), sector one of the 11 GICS sectors and an industry of it, ``market_cap = 10**(9 + 3 u)``
USD, currency ``USD``. Fundamentals: metrics ``revenue``, ``net_income``, ``eps``, ``book_value`` for
the 8 most recent quarter ends at least 45 days before ``as_of`` (default today); each value is a
deterministic function of (symbol, quarter), so a quarter's figures never change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from calendar import monthrange
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pandas as pd

from factor_platform.domain import sessions
from factor_platform.domain.symbols import is_option_symbol
from factor_platform.sources.base import (
    ACTION_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    PRICE_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    date_range,
    finish_actions,
    finish_fundamentals,
    finish_prices,
    finish_profiles,
    requested_symbols,
)

__all__ = [
    "ETF_DRIFTS",
    "ETF_SPY_CORRELATION",
    "ETF_VOLS",
    "FACTOR_ETFS",
    "FAIL_PATTERN",
    "GICS_SECTORS",
    "IDIO_VOL",
    "ORIGIN",
    "SAMPLE_DIVIDEND_YIELDS",
    "SAMPLE_SPLITS",
    "STYLE_CORRELATION",
    "ModelParameters",
    "SampleSource",
    "etf_correlation",
    "etf_covariance",
    "model_parameters",
    "traded_price",
    "true_betas",
]

ORIGIN = dt.date(2000, 1, 3)
_HORIZON = dt.date(2200, 12, 31)  # beyond any calendar's last session

FACTOR_ETFS: tuple[str, ...] = ("SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")
# per ETF: (daily vol sigma_e, daily drift mu_e, rho_e = correlation with SPY) -- the docstring's table
_ETF_TABLE = {
    "SPY": (0.011, 4.0e-4, 1.0),
    "TLT": (0.009, 1.0e-4, 0.0),
    "VTV": (0.010, 3.5e-4, 0.92),
    "VUG": (0.013, 4.5e-4, 0.93),
    "MTUM": (0.012, 4.5e-4, 0.88),
    "QUAL": (0.011, 4.0e-4, 0.95),
    "IWM": (0.014, 3.5e-4, 0.85),
    "USMV": (0.008, 3.0e-4, 0.86),
}
ETF_VOLS = {etf: row[0] for etf, row in _ETF_TABLE.items()}
ETF_DRIFTS = {etf: row[1] for etf, row in _ETF_TABLE.items()}
ETF_SPY_CORRELATION = {etf: row[2] for etf, row in _ETF_TABLE.items()}
STYLE_ETFS: tuple[str, ...] = ("VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")
_STYLE_PAIRS = {
    ("VTV", "VUG"): -0.6,
    ("VUG", "MTUM"): 0.4,
    ("QUAL", "USMV"): 0.3,
    ("VTV", "IWM"): 0.3,
    ("MTUM", "QUAL"): 0.2,
}
STYLE_CORRELATION = pd.DataFrame(np.eye(len(STYLE_ETFS)), index=STYLE_ETFS, columns=STYLE_ETFS)
for (_a, _b), _rho in _STYLE_PAIRS.items():
    STYLE_CORRELATION.loc[_a, _b] = STYLE_CORRELATION.loc[_b, _a] = _rho

IDIO_VOL = 0.006

# The model's corporate actions (the docstring's list): fixed, so the published basis never moves.
SAMPLE_SPLITS: dict[str, tuple[tuple[dt.date, float], ...]] = {
    "NVDA": ((dt.date(2026, 6, 10), 4.0),),
    "SPLITCO": ((dt.date(2026, 3, 16), 0.1),),
}
SAMPLE_DIVIDEND_YIELDS: dict[str, float] = {"KO": 0.0075, "PG": 0.006, "JNJ": 0.007, "DIVCO": 0.02}
_DIVIDEND_MONTHS = (3, 6, 9, 12)  # ex-date: the first session on or after the 15th
FAIL_PATTERN = re.compile(r"^(?:SAMPLEFAIL|FAIL)[A-Z0-9]*$")

GICS_SECTORS: dict[str, tuple[str, ...]] = {
    "Energy": ("Oil, Gas & Consumable Fuels", "Energy Equipment & Services"),
    "Materials": ("Chemicals", "Metals & Mining", "Containers & Packaging"),
    "Industrials": ("Aerospace & Defense", "Machinery", "Ground Transportation"),
    "Consumer Discretionary": ("Automobiles", "Specialty Retail", "Hotels, Restaurants & Leisure"),
    "Consumer Staples": ("Beverages", "Food Products", "Household Products"),
    "Health Care": ("Pharmaceuticals", "Biotechnology", "Health Care Equipment & Supplies"),
    "Financials": ("Banks", "Capital Markets", "Insurance"),
    "Information Technology": ("Software", "Semiconductors & Semiconductor Equipment", "IT Services"),
    "Communication Services": (
        "Interactive Media & Services",
        "Entertainment",
        "Diversified Telecommunication Services",
    ),
    "Utilities": ("Electric Utilities", "Multi-Utilities", "Water Utilities"),
    "Real Estate": ("Specialized REITs", "Residential REITs", "Real Estate Management & Development"),
}
_METRICS = ("revenue", "net_income", "eps", "book_value")
_OPTION_FAILURE = "sample source has no option contract prices"
_FAIL_FAILURE = "deliberate failure: the sample source fails symbols matching ^(?:SAMPLEFAIL|FAIL)[A-Z0-9]*$"


# -- hashing ------------------------------------------------------------------------------------


def _digest(*parts: str) -> bytes:
    return hashlib.sha256(":".join(("factor_platform.sample", *parts)).encode()).digest()


def _unit_words(*parts: str) -> tuple[float, float, float, float]:
    digest = _digest(*parts)
    w0, w1, w2, w3 = (int.from_bytes(digest[i : i + 8], "big") / 2.0**64 for i in range(0, 32, 8))
    return w0, w1, w2, w3


_MASK = (1 << 64) - 1


def _counter_uniforms(keys: np.ndarray, offsets: np.ndarray, stream: int) -> np.ndarray:
    """SplitMix64 of (key, stream, day offset) -> uniforms in [0, 1); vectorized, no state."""
    # uint64 array arithmetic wraps silently, which is what a hash wants
    z = keys.astype(np.uint64) + np.uint64((stream * 0xD1B54A32D192ED03) & _MASK)
    z = z + offsets.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


# -- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelParameters:
    """The true parameters of one symbol's return model (see the module docstring)."""

    symbol: str
    is_etf: bool
    market_beta: float
    ir_beta: float
    alpha: float  # per day; 0 for ETFs (their drift is mu_e)
    idio_vol: float  # per day; 0 for ETFs
    daily_vol: float  # model std of the daily return
    p0: float  # close on the first session on or after ORIGIN


@lru_cache(maxsize=4096)
def model_parameters(symbol: str) -> ModelParameters:
    """The documented, deterministic model parameters of ``symbol``."""
    u0, u1, u2, u3 = _unit_words(symbol)
    p0 = 20.0 * 20.0**u3
    if symbol in FACTOR_ETFS:
        vol = ETF_VOLS[symbol]
        market = ETF_SPY_CORRELATION[symbol] * vol / ETF_VOLS["SPY"]
        return ModelParameters(symbol, True, market, 1.0 if symbol == "TLT" else 0.0, 0.0, 0.0, vol, p0)
    market, ir = 0.5 + 1.3 * u0, -0.6 + 1.2 * u1
    vol = float(np.sqrt((market * ETF_VOLS["SPY"]) ** 2 + (ir * ETF_VOLS["TLT"]) ** 2 + IDIO_VOL**2))
    return ModelParameters(symbol, False, market, ir, (u2 - 0.5) * 4e-4, IDIO_VOL, vol, p0)


def true_betas(symbol: str) -> dict[str, float]:
    """``{"market_beta": ..., "ir_beta": ...}``: the betas the sample model planted in ``symbol``."""
    params = model_parameters(symbol)
    return {"market_beta": params.market_beta, "ir_beta": params.ir_beta}


def etf_correlation() -> pd.DataFrame:
    """The exact correlation matrix of the factor ETFs' daily returns (FACTOR_ETFS x FACTOR_ETFS)."""
    rho = np.array([ETF_SPY_CORRELATION[e] for e in FACTOR_ETFS])
    own = np.sqrt(1.0 - rho**2)
    style = np.zeros((len(FACTOR_ETFS), len(FACTOR_ETFS)))
    idx = [FACTOR_ETFS.index(e) for e in STYLE_ETFS]
    style[np.ix_(idx, idx)] = STYLE_CORRELATION.to_numpy()
    corr = np.outer(rho, rho) + np.outer(own, own) * style
    corr[1, :] = corr[:, 1] = 0.0  # TLT: independent of everything
    np.fill_diagonal(corr, 1.0)
    return pd.DataFrame(corr, index=FACTOR_ETFS, columns=FACTOR_ETFS)


def etf_covariance() -> pd.DataFrame:
    """The exact covariance matrix of the factor ETFs' daily returns."""
    vols = np.array([ETF_VOLS[e] for e in FACTOR_ETFS])
    return etf_correlation() * np.outer(vols, vols)


@lru_cache(maxsize=4)
def _etf_returns(n_days: int) -> np.ndarray:
    """(n_days, 8) daily returns of FACTOR_ETFS, row k for the calendar day ORIGIN + k."""
    rng = np.random.default_rng(int.from_bytes(_digest("factor-etfs"), "big"))
    draws = rng.standard_normal((n_days, len(FACTOR_ETFS)))  # row-major: rows are a prefix-stable stream
    style = draws[:, 2:] @ np.linalg.cholesky(STYLE_CORRELATION.to_numpy()).T
    z = np.empty_like(draws)
    z[:, :2] = draws[:, :2]
    for j, etf in enumerate(STYLE_ETFS):
        rho = ETF_SPY_CORRELATION[etf]
        z[:, FACTOR_ETFS.index(etf)] = rho * draws[:, 0] + np.sqrt(1.0 - rho**2) * style[:, j]
    mu = np.array([ETF_DRIFTS[e] for e in FACTOR_ETFS])
    vol = np.array([ETF_VOLS[e] for e in FACTOR_ETFS])
    returns = mu + vol * z
    returns.setflags(write=False)
    return returns


@lru_cache(maxsize=16)
def _session_offsets(calendar: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The calendar's sessions from ORIGIN on, and their day offsets from ORIGIN."""
    index = sessions.sessions_in_range(ORIGIN, _HORIZON, calendar)
    offsets = np.asarray((index - pd.Timestamp(ORIGIN)).days, dtype=np.int64)
    return index, offsets


@lru_cache(maxsize=16)
def _etf_session_returns(calendar: str) -> np.ndarray:
    """(8, n_sessions) returns of FACTOR_ETFS on the sessions of ``_session_offsets(calendar)``."""
    _, offsets = _session_offsets(calendar)
    n_days = int(offsets[-1]) + 1 if len(offsets) else 0
    out = np.ascontiguousarray(_etf_returns(n_days)[offsets].T)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=256)
def _series(symbol: str, calendar: str) -> tuple[np.ndarray, np.ndarray]:
    """(returns, close) of ``symbol`` on every session of ``_session_offsets(calendar)``."""
    _, offsets = _session_offsets(calendar)
    etfs = _etf_session_returns(calendar)
    if symbol in FACTOR_ETFS:
        returns = etfs[FACTOR_ETFS.index(symbol)].copy()
    else:
        params = model_parameters(symbol)
        noise = _idiosyncratic_draws(symbol, int(offsets[-1]) + 1 if len(offsets) else 0)
        returns = params.market_beta * etfs[0]
        returns += params.ir_beta * etfs[1]
        returns += IDIO_VOL * noise[offsets]
        returns += params.alpha
    if len(returns):
        returns[0] = 0.0  # the first session's close is P0
    growth, scale = 1.0 + returns, model_parameters(symbol).p0
    actions = _actions(symbol, calendar)
    if actions is not None:  # close_d / close_{d-1} = 1 + r - y on the one basis of all splits
        growth -= actions.yields
        scale /= _all_splits(symbol)
    close = scale * np.cumprod(growth)
    returns.setflags(write=False)
    close.setflags(write=False)
    return returns, close


class _Actions(NamedTuple):
    """Per session of ``_session_offsets(calendar)``: the model's actions and the basis factor."""

    yields: np.ndarray  # dividend yield y on an ex-date, else 0
    splits: np.ndarray  # split ratio on a split session, else 1
    to_traded: np.ndarray  # S_all / S(d): published close -> price as traded


def _all_splits(symbol: str) -> float:
    return float(np.prod([ratio for _, ratio in SAMPLE_SPLITS.get(symbol, ())]))


@lru_cache(maxsize=64)
def _actions(symbol: str, calendar: str) -> _Actions | None:
    """The documented actions of ``symbol`` on the calendar's sessions; None for a symbol without any."""
    yield_ = SAMPLE_DIVIDEND_YIELDS.get(symbol)
    if symbol not in SAMPLE_SPLITS and yield_ is None:
        return None
    index, _ = _session_offsets(calendar)
    yields, splits = np.zeros(len(index)), np.ones(len(index))
    for day, ratio in SAMPLE_SPLITS.get(symbol, ()):
        at = index.searchsorted(pd.Timestamp(day))
        if at < len(index):
            splits[at] *= ratio
    if yield_ is not None and len(index):
        years = range(ORIGIN.year, index[-1].year + 1)
        at = index.searchsorted([pd.Timestamp(y, m, 15) for y in years for m in _DIVIDEND_MONTHS])
        yields[at[(at > 0) & (at < len(index))]] = yield_  # an ex-date needs a previous close
    out = _Actions(yields, splits, _all_splits(symbol) / np.cumprod(splits))
    for array in out:
        array.setflags(write=False)
    return out


def _action_rows(symbol: str, calendar: str, window: slice) -> list[tuple]:
    """ACTION_COLUMNS rows of ``symbol`` on the sessions of ``window``: D_e = y_e * close_{e-1}."""
    actions = _actions(symbol, calendar)
    if actions is None:
        return []
    index, _ = _session_offsets(calendar)
    _, close = _series(symbol, calendar)
    rows = [
        (symbol, index[at], "split", float(actions.splits[at]), "sample")
        for at in np.flatnonzero(actions.splits[window] != 1.0) + window.start
    ]
    rows += [
        (symbol, index[at], "dividend", float(actions.yields[at] * close[at - 1]), "sample")
        for at in np.flatnonzero(actions.yields[window]) + window.start
    ]
    return rows


def _window(index: pd.DatetimeIndex, start: dt.date, end: dt.date) -> slice:
    """The positions of ``index`` in ``[start, end]``."""
    return slice(index.searchsorted(pd.Timestamp(start)), index.searchsorted(pd.Timestamp(end), side="right"))


def traded_price(symbol: str, day: dt.date | str, *, calendar: str = "XNYS") -> float:
    """The close as traded on session ``day`` (``B_d``, before later splits): what a book enters at.

    ValueError for a day that is not a session from ORIGIN on, or a symbol the source fails.
    """
    reason = _unavailable(symbol)
    if reason is not None:
        raise ValueError(f"{symbol}: {reason}")
    index, _ = _session_offsets(calendar)
    ts = pd.Timestamp(sessions.to_date(day))
    at = index.searchsorted(ts)
    if at == len(index) or index[at] != ts:
        raise ValueError(f"{ts.date()} is not a {calendar} session on or after {ORIGIN}")
    _, close = _series(symbol, calendar)
    actions = _actions(symbol, calendar)
    return float(close[at] if actions is None else close[at] * actions.to_traded[at])


def _idiosyncratic_draws(symbol: str, n_days: int) -> np.ndarray:
    """eps_s,k for k < n_days: a prefix of the symbol's one stream of N(0, 1) draws."""
    return np.random.default_rng(int.from_bytes(_digest(symbol, "returns"), "big")).standard_normal(n_days)


def _profile_words(symbol: str) -> tuple[float, float, float, float]:
    return _unit_words(symbol, "profile")


def _is_factor_etf(symbol: str) -> bool:
    return symbol in FACTOR_ETFS


def _unavailable(symbol: str) -> str | None:
    if FAIL_PATTERN.match(symbol):
        return _FAIL_FAILURE
    if is_option_symbol(symbol):
        return _OPTION_FAILURE
    return None


class SampleSource:
    """Offline prices, profiles and fundamentals from the documented model of this module."""

    name = "sample"

    def __init__(self, *, calendar: str = "XNYS") -> None:
        self.calendar = calendar

    def __repr__(self) -> str:
        return f"SampleSource(calendar={self.calendar!r})"

    def fetch_prices(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        wanted = requested_symbols(symbols)
        start, end = date_range(start, end)
        index, offsets = _session_offsets(self.calendar)
        window = _window(index, start, end)
        lo, hi = window.start, window.stop
        any_session = len(sessions.sessions_in_range(start, end, self.calendar)) > 0
        failures: dict[str, str] = {}
        blocks: list[tuple[str, slice]] = []
        for symbol in wanted:
            reason = _unavailable(symbol)
            if reason is None and hi <= lo and any_session:
                reason = f"sample prices start on {ORIGIN}; none between {start} and {end}"
            if reason is not None:
                failures[symbol] = reason
            elif hi > lo:
                blocks.append((symbol, window))
        return FetchResult(self._price_frame(blocks, index, offsets, start, end, wanted), failures)

    def _price_frame(self, blocks, index, offsets, start, end, wanted) -> pd.DataFrame:
        if not blocks:
            return finish_prices(pd.DataFrame(columns=PRICE_COLUMNS), wanted, start, end, self.calendar)
        closes, adjs, prevs, returns, sigmas, keys, bases, to_traded = [], [], [], [], [], [], [], []
        for symbol, window in blocks:
            params = model_parameters(symbol)
            r, close = _series(symbol, self.calendar)
            n = window.stop - window.start
            closes.append(close[window])
            # with dividends the platform adds D back to close: the sample publishes no adj_close
            adjs.append(np.full(n, np.nan) if symbol in SAMPLE_DIVIDEND_YIELDS else close[window])
            if window.start > 0:
                prevs.append(close[window.start - 1 : window.stop - 1])
            else:
                prevs.append(np.r_[close[0], close[: window.stop - 1]])
            returns.append(r[window])
            actions = _actions(symbol, self.calendar)
            to_traded.append(np.ones(n) if actions is None else actions.to_traded[window])
            u_volume = _profile_words(symbol)[3]
            base = 10.0 ** ((7.0 + u_volume) if params.is_etf else (5.0 + 2.5 * u_volume))
            sigmas.append(np.full(n, params.daily_vol))
            keys.append(np.full(n, int.from_bytes(_digest(symbol, "bars")[:8], "big"), dtype=np.uint64))
            bases.append(np.full(n, base))
        close, adj, prev, r, sigma, key, base, shares = (
            np.concatenate(a) for a in (closes, adjs, prevs, returns, sigmas, keys, bases, to_traded)
        )
        days = np.concatenate([offsets[w] for _, w in blocks])
        v1, v2, v3, v4 = (_counter_uniforms(key, days, stream) for stream in range(4))
        open_ = prev * (1.0 + 0.5 * sigma * (2.0 * v1 - 1.0))
        frame = pd.DataFrame(
            {
                "symbol": np.repeat([s for s, _ in blocks], [w.stop - w.start for _, w in blocks]),
                "date": np.concatenate([index[w].to_numpy() for _, w in blocks]),
                "open": open_,
                "high": np.maximum(open_, close) * (1.0 + sigma * v2),
                "low": np.minimum(open_, close) * (1.0 - sigma * v3),
                "close": close,
                "adj_close": adj,
                # on the published basis: traded shares before a split times its ratio
                "volume": np.maximum(np.rint(base * (0.5 + v4) * (1.0 + 10.0 * np.abs(r)) * shares), 1.0),
                "source": self.name,
            }
        )
        return finish_prices(frame, wanted, start, end, self.calendar)

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        """The model's splits and dividends (module docstring) dated in ``[start, end]``, on the published basis."""
        wanted = requested_symbols(symbols)
        start, end = date_range(start, end)
        window = _window(_session_offsets(self.calendar)[0], start, end)
        rows, failures = [], {}
        for symbol in wanted:
            reason = _unavailable(symbol)
            if reason is not None:
                failures[symbol] = reason
            else:
                rows.extend(_action_rows(symbol, self.calendar, window))
        return FetchResult(finish_actions(pd.DataFrame(rows, columns=ACTION_COLUMNS), wanted, start, end), failures)

    def fetch_profiles(self, symbols: Sequence[str]) -> FetchResult:
        wanted = requested_symbols(symbols)
        rows, failures = [], {}
        for symbol in wanted:
            reason = _unavailable(symbol)
            if reason is not None:
                failures[symbol] = reason.replace("prices", "profiles")
                continue
            u0, u1, u2, _ = _profile_words(symbol)
            if _is_factor_etf(symbol):
                name, sector, industry = f"{symbol} Sample ETF", "ETF", "ETF"
            else:
                sectors = list(GICS_SECTORS)
                sector = sectors[int(u0 * len(sectors))]
                industry = GICS_SECTORS[sector][int(u1 * len(GICS_SECTORS[sector]))]
                name = f"{symbol} Sample Corp"
            rows.append((symbol, name, sector, industry, float(10.0 ** (9.0 + 3.0 * u2)), "USD"))
        return FetchResult(finish_profiles(pd.DataFrame(rows, columns=PROFILE_COLUMNS), wanted), failures)

    def fetch_fundamentals(self, symbols: Sequence[str], *, as_of: dt.date | None = None) -> FetchResult:
        """Quarterly revenue, net_income, eps, book_value; the 8 quarter ends >= 45 days before as_of."""
        wanted = requested_symbols(symbols)
        as_of = sessions.to_date(as_of) if as_of is not None else dt.date.today()
        quarters = _reported_quarters(as_of, count=8)
        rows, failures = [], {}
        for symbol in wanted:
            reason = _unavailable(symbol)
            if reason is None and _is_factor_etf(symbol):
                reason = "sample source has no company fundamentals for an ETF"
            if reason is not None:
                failures[symbol] = reason.replace("prices", "fundamentals")
                continue
            rows.extend(_fundamental_rows(symbol, quarters))
        return FetchResult(finish_fundamentals(pd.DataFrame(rows, columns=FUNDAMENTAL_COLUMNS), wanted), failures)


def _reported_quarters(as_of: dt.date, *, count: int) -> list[tuple[int, dt.date]]:
    """(quarter number year*4 + q-1, quarter end) of the ``count`` latest quarters ended 45+ days ago."""
    cutoff = as_of - dt.timedelta(days=45)
    number = cutoff.year * 4 + (cutoff.month - 1) // 3
    out = []
    while len(out) < count:
        year, q = divmod(number, 4)
        month = 3 * q + 3
        end = dt.date(year, month, monthrange(year, month)[1])
        if end <= cutoff:
            out.append((number, end))
        number -= 1
    return out[::-1]


def _fundamental_rows(symbol: str, quarters: list[tuple[int, dt.date]]) -> list[tuple]:
    params = model_parameters(symbol)
    u_sector, _, u_cap, _ = _profile_words(symbol)
    f0, f1, f2, f3 = _unit_words(symbol, "fundamentals")
    market_cap = 10.0 ** (9.0 + 3.0 * u_cap)
    shares = market_cap / params.p0
    sales_to_cap, margin, growth, book_to_cap = 0.1 + 0.9 * f0, -0.05 + 0.30 * f1, -0.01 + 0.05 * f2, 0.2 + 0.6 * f3
    numbers = np.array([n for n, _ in quarters], dtype=np.int64)
    key = int.from_bytes(_digest(symbol, "fundamentals-noise")[:8], "big")
    keys = np.full(len(numbers), key, dtype=np.uint64)
    noise_rev, noise_margin = _counter_uniforms(keys, numbers, 0), _counter_uniforms(keys, numbers, 1)
    steps = numbers - 2020 * 4  # quarters since 2020Q1
    revenue = market_cap * sales_to_cap / 4.0 * (1.0 + growth) ** steps * (1.0 + 0.05 * (2 * noise_rev - 1))
    net_income = revenue * (margin + 0.02 * (2 * noise_margin - 1))
    book_value = market_cap * book_to_cap * 1.005**steps
    rows = []
    for i, (_, end) in enumerate(quarters):
        values = {
            "revenue": revenue[i],
            "net_income": net_income[i],
            "eps": net_income[i] / shares,
            "book_value": book_value[i],
        }
        rows.extend((symbol, pd.Timestamp(end), metric, float(values[metric])) for metric in _METRICS)
    return rows
