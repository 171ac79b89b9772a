"""Rolling factor exposures of symbols: OLS, spread and ridge fits over return-counted windows.

All (target date x symbol) windows of one fit are solved together: running sums over each
symbol's valid rows give every window's moments, and a closed form (OLS) or a Cholesky solve
vectorized over windows (ridge) turns them into coefficients. A window whose moments a rounding
error bound cannot vouch for to ~1e-9 (near-perfect fits such as an ETF on itself, near-constant
series) is re-fitted from its gathered rows with explicit residuals. Definitions: CONTRACT.md
section 4.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtr  # Student t CDF; scipy.stats would add ~0.5 s to every process start

from factor_platform.calc.returns import check_dates, check_symbols, check_wide_frame, index_ns
from factor_platform.domain.factor_models import Regression

EXPOSURE_COLUMNS = ["symbol", "date", "factor", "beta", "alpha", "r_squared", "std_error", "p_value", "n_obs", "method"]
FAILURE_COLUMNS = ["symbol", "stage", "date", "error"]

_EPS = np.finfo(np.float64).eps
# A window's SSR from running sums is used when its worst-case relative rounding error (bounded from
# the magnitudes summed) is below this; otherwise the window is re-fitted from its rows.
_SUMS_RTOL = 1e-9
# Running sums per block of symbols (rows x symbols x moments), in float64 elements: bounds memory.
_BLOCK_ELEMENTS = 6_000_000

_OK, _TOO_FEW, _Y_CONSTANT, _X_CONSTANT, _NOT_FINITE = range(5)


@dataclass(frozen=True)
class _Fit:
    """One least-squares problem: the factor names it produces and how to build its regressors."""

    method: str
    names: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]  # per regressor: (etf,) or (long, short) for a spread
    window: int
    min_obs: int
    ridge_alpha: float | None

    def label(self, j: int) -> str:
        return "-".join(self.columns[j])


def factor_exposures(
    returns: pd.DataFrame,
    regressions: Sequence[Regression],
    *,
    symbols: Iterable[str],
    dates: Iterable,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Factor betas of each symbol on each target date, from the last ``window`` common returns.

    Parameters
    ----------
    returns : DataFrame, shape (T sessions, N columns)
        Wide daily simple returns (``simple_returns``) of every row loaded: the lookback before the
        first target date and the target dates. Must contain a column per symbol; the factor ETFs'
        columns should be present (a missing or all-NaN ETF column is a recorded failure).
    regressions : sequence of Regression
        Fit definitions (``factor_models.load_regressions``); factor names must be unique.
    symbols : iterable of str
        Symbols to fit (each must be a column of ``returns``).
    dates : iterable of date-like
        Target dates d. Only rows of ``returns`` dated <= d are used for d (no look-ahead); a date
        need not be a row of ``returns``.

    Notes
    -----
    For a target date d, a symbol s and one fit, the window is the last ``window`` rows <= d on
    which s and every regressor series of the fit have a return (windows count returns, not
    sessions: a symbol with missing days reaches further back; each symbol has its own window).
    Fewer than ``min_obs`` such rows: no row, and a failure.

    - ``ols``: OLS with intercept of y on one ETF's return, equal to statsmodels
      ``OLS(y, add_constant(x)).fit()``: beta = params[1], alpha = params[0], r_squared =
      rsquared, std_error = bse[1], p_value = two-sided t-test of beta (n - 2 df), n_obs = nobs.
    - ``spread``: the same on x = r_long - r_short.
    - ``ridge``: scikit-learn ``make_pipeline(StandardScaler(), Ridge(alpha))`` on all the fit's
      ETFs jointly (columns standardized with the window mean and population std, a constant column
      scaled by 1); beta_j = coef_j / std_j, alpha = intercept in return units
      (ybar - sum_j beta_j xbar_j), r_squared = in-sample R^2; std_error and p_value are NaN.

    ``alpha`` is a daily return (not annualized). A y or OLS regressor without variance over the
    window (sklearn's constant-feature test) cannot be fitted: no row, and a failure.

    Returns
    -------
    exposures : DataFrame
        Long, columns ``EXPOSURE_COLUMNS``: symbol, date (datetime64[ns]), factor, beta, alpha,
        r_squared, std_error, p_value (float64; NaN only in std_error/p_value of ridge rows),
        n_obs (int64), method ("ols" | "spread" | "ridge"). Ordered by factor (definition order),
        symbol (as given), date.
    failures : DataFrame
        Long, columns ``FAILURE_COLUMNS``: symbol, stage (``factor:<name>``), date (the latest
        target date that failed, datetime64[ns]), error (message). One row per (symbol, stage).

    Raises
    ------
    ValueError
        Malformed ``returns`` (see ``check_wide_frame``), a symbol without a column, bad dates,
        a non-``Regression`` in ``regressions`` or a factor name defined twice.
    """
    values = check_wide_frame(returns, name="returns")
    symbols = check_symbols(symbols, returns, name="returns")
    targets = check_dates(dates)
    fits = _fits(regressions)

    position = {c: i for i, c in enumerate(returns.columns)}
    y_by_symbol = np.ascontiguousarray(values[:, [position[s] for s in symbols]].T)  # (S, T)
    ends = np.searchsorted(index_ns(returns), targets.asi8, side="right")  # rows <= each date

    pieces: list[tuple[int, int, _BlockResult]] = []  # (fit, first symbol of the block, result)
    failures: list[tuple[int, str, int, str]] = []  # (symbol, factor, date index, message)
    if symbols and len(targets):
        for i, fit in enumerate(fits):
            absent = _absent_etfs(fit, values, position)
            if absent:
                for name in fit.names:
                    message = f"{name}: " + "; ".join(f"factor ETF {etf} {why}" for etf, why in absent)
                    failures.extend((s, name, len(targets) - 1, message) for s in range(len(symbols)))
                continue
            x = np.column_stack([_regressor(values, position, cols) for cols in fit.columns])
            width = max(1, _BLOCK_ELEMENTS // (_n_moments(x.shape[1]) * (len(values) + 1)))
            for start in range(0, len(symbols), width):
                result = _fit_block(y_by_symbol[start : start + width], x, ends, fit)
                pieces.append((i, start, result))
                failures.extend(_failure_events(result, fit, start, targets))

    return _exposure_frame(pieces, fits, symbols, targets), _failure_frame(failures, fits, symbols, targets)


# ----------------------------------------------------------------------------------------------
# fits and regressors


def _fits(regressions: Sequence[Regression]) -> list[_Fit]:
    fits: list[_Fit] = []
    seen: set[str] = set()
    for reg in regressions:
        if not isinstance(reg, Regression):
            raise ValueError(f"regressions must be Regression objects, got {type(reg).__name__}")
        for name in reg.factors:
            if name in seen:
                raise ValueError(f"factor {name!r} is defined twice")
            seen.add(name)
        if reg.method == "ridge":
            if not reg.alpha > 0:
                raise ValueError(f"ridge penalty alpha must be > 0, got {reg.alpha}")
            fits.append(
                _Fit("ridge", tuple(reg.factors), tuple(reg.factors.values()), reg.window, reg.min_obs, reg.alpha)
            )
        else:
            for name, tickers in reg.factors.items():
                fits.append(_Fit(reg.method, (name,), (tuple(tickers),), reg.window, reg.min_obs, None))
    return fits


def _absent_etfs(fit: _Fit, values: np.ndarray, position: dict) -> list[tuple[str, str]]:
    absent = []
    for etf in dict.fromkeys(t for cols in fit.columns for t in cols):
        if etf not in position:
            absent.append((etf, "has no prices"))
        elif np.isnan(values[:, position[etf]]).all():
            absent.append((etf, "has no returns in the loaded range"))
    return absent


def _regressor(values: np.ndarray, position: dict, cols: tuple[str, ...]) -> np.ndarray:
    if len(cols) == 1:
        return values[:, position[cols[0]]]
    return values[:, position[cols[0]]] - values[:, position[cols[1]]]


def _n_moments(p: int) -> int:
    q = p + 1
    return q + q * (q + 1) // 2


# ----------------------------------------------------------------------------------------------
# the rolling fit of one block of symbols. Per-window arrays are laid out (moment, window) so that
# every operation runs over a long contiguous axis of windows.


@dataclass
class _BlockResult:
    n: np.ndarray  # (D, S) returns in each window
    status: np.ndarray  # (D, S) _OK, _TOO_FEW, ...
    d_idx: np.ndarray  # (F,) date of each fitted window, symbol-major order
    s_idx: np.ndarray  # (F,) symbol within the block
    beta: np.ndarray  # (p, F)
    alpha: np.ndarray  # (F,)
    r_squared: np.ndarray  # (F,)
    std_error: np.ndarray  # (F,), NaN for ridge
    p_value: np.ndarray  # (F,), NaN for ridge


class _Moments:
    """Centered cross moments of z = (y, x_1..x_p) per window: the upper triangle, (q(q+1)/2, F)."""

    def __init__(self, tri: np.ndarray, q: int):
        self.tri = tri
        self.index = np.empty((q, q), dtype=np.intp)
        iu, ju = np.triu_indices(q)
        self.index[iu, ju] = self.index[ju, iu] = np.arange(len(iu))

    def __call__(self, a: int, b: int) -> np.ndarray:
        return self.tri[self.index[a, b]]


def _fit_block(y_by_symbol: np.ndarray, x: np.ndarray, ends: np.ndarray, fit: _Fit) -> _BlockResult:
    """Fit every (target date, symbol) window of one block.

    y_by_symbol (S, T) C-contiguous returns of the block's symbols; x (T, p) regressors; ends (D,)
    the number of rows <= each target date.
    """
    S, T = y_by_symbol.shape
    q = x.shape[1] + 1
    valid_by_symbol = ~np.isnan(y_by_symbol) & ~np.isnan(x).any(axis=1)  # (S, T)
    count = np.zeros((S, T + 1), dtype=np.int64)  # count[s, i] = valid rows before row i
    np.cumsum(valid_by_symbol, axis=1, out=count[:, 1:])
    k = count[:, ends].T  # (D, S) valid rows <= d
    n = np.minimum(k, fit.window)
    status = np.where(n >= fit.min_obs, _OK, _TOO_FEW)
    # date-major: the gathers below then read neighbouring symbols of one row together
    d_idx, s_idx = np.nonzero(status == _OK)
    nf = n[d_idx, s_idx].astype(np.float64)
    hi = ends[d_idx]  # window = the valid rows in [lo, hi)
    lo = _first_reaching(count, s_idx, k[d_idx, s_idx] - n[d_idx, s_idx])
    y, valid = y_by_symbol.T, valid_by_symbol.T  # (T, S) views

    # Window moments from running sums (anchor 0) started at the earliest window, then centered.
    base = int(lo.min()) if len(lo) else 0
    sums = _running_sums(y[base:], x[base:], valid[base:]).reshape(-1, (T + 1 - base) * S)
    at_end = np.take(sums, (hi - base) * S + s_idx, axis=1)  # (m, F)
    window = at_end - np.take(sums, (lo - base) * S + s_idx, axis=1)
    del sums
    mean = window[:q] / nf
    iu, ju = np.triu_indices(q)
    moments = _Moments(window[q:] - nf * mean[iu] * mean[ju], q)

    beta, alpha = _coefficients(nf, mean, moments, fit.ridge_alpha)
    ssr = _ssr_from_sums(beta, moments)

    # Rounding error bound of a window moment taken from running sums: each addition inside the
    # window's span rounds by at most eps * |running sum| <= eps * sqrt(S_aa S_bb) (S_aa the running
    # sum of squares at the window's end; Cauchy-Schwarz), additions before the window cancel in
    # the difference, and the centering term adds at most sqrt(rows summed / n) times as much. Windows
    # whose SSR or variances that bound cannot vouch for to _SUMS_RTOL (near-perfect fits such as
    # an ETF on itself, near-constant series) are re-fitted from their rows.
    root = np.sqrt(at_end[q + moments.index[np.arange(q), np.arange(q)]])  # (q, F)
    unit = 2.0 * _EPS * (hi - lo + 2) * (1.0 + np.sqrt((hi - base) / nf))
    err_ssr = unit * (root[0] + (np.abs(beta) * root[1:]).sum(axis=0)) ** 2
    with np.errstate(invalid="ignore"):
        refit = ~(err_ssr <= _SUMS_RTOL * ssr)
        for a in range(q):
            refit |= moments(a, a) <= 100.0 * unit * root[a] ** 2
    refit |= ~np.isfinite(beta).all(axis=0) | ~np.isfinite(alpha)

    status_f = np.full(len(nf), _OK)
    if refit.any():
        rows = np.flatnonzero(refit)
        exact = _refit_exact(y, x, valid, lo[rows], hi[rows], s_idx[rows], fit.ridge_alpha)
        beta[:, rows], alpha[rows], ssr[rows], moments.tri[:, rows], status_f[rows] = exact

    r_squared, std_error, p_value = _statistics(nf, moments, beta, ssr, ols=fit.ridge_alpha is None)
    finite = np.isfinite(beta).all(axis=0) & np.isfinite(alpha) & np.isfinite(r_squared)
    if fit.ridge_alpha is None:
        finite &= np.isfinite(std_error) & np.isfinite(p_value)
    status_f[(status_f == _OK) & ~finite] = _NOT_FINITE
    status[d_idx, s_idx] = status_f

    # kept windows in symbol-major order (the output's order)
    pair = np.full(status.shape, -1, dtype=np.int64)
    pair[d_idx, s_idx] = np.arange(len(d_idx))
    keep = pair.T[status.T == _OK]
    return _BlockResult(
        n=n,
        status=status,
        d_idx=d_idx[keep],
        s_idx=s_idx[keep],
        beta=beta[:, keep],
        alpha=alpha[keep],
        r_squared=r_squared[keep],
        std_error=std_error[keep],
        p_value=p_value[keep],
    )


def _running_sums(y: np.ndarray, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(m, T + 1, S) running sums over each symbol's valid rows; [:, i] = sum over rows < i.

    Moments, in order: y, x_1..x_p, then z_a z_b for a <= b in ``np.triu_indices`` order, with
    z = (y, x_1..x_p).
    """
    T, S = y.shape
    p = x.shape[1]
    q = p + 1
    sums = np.empty((_n_moments(p), T + 1, S))
    sums[:, 0] = 0.0
    body = sums[:, 1:]
    on = valid.astype(np.float64)
    x0 = np.where(np.isnan(x), 0.0, x)
    yz = np.where(valid, y, 0.0)
    body[0] = yz
    np.multiply(yz, yz, out=body[q])
    for j in range(p):
        np.multiply(x0[:, j, None], on, out=body[1 + j])
        np.multiply(yz, x0[:, j, None], out=body[q + 1 + j])
    for t, (a, b) in enumerate(zip(*np.triu_indices(p), strict=False)):
        np.multiply((x0[:, a] * x0[:, b])[:, None], on, out=body[2 * q + t])
    # row by row: numpy's cumsum along a non-contiguous axis is several times slower
    for i in range(1, T + 1):
        sums[:, i] += sums[:, i - 1]
    return sums


def _first_reaching(count: np.ndarray, rows: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per pair, the first column i with count[row, i] >= target (each row of count non-decreasing)."""
    width = count.shape[1]
    offset = np.arange(count.shape[0], dtype=np.int64) * width  # count < width: rows do not overlap
    flat = (count + offset[:, None]).ravel()
    return np.searchsorted(flat, target + offset[rows], side="left") - offset[rows]


def _coefficients(n: np.ndarray, mean: np.ndarray, moments: _Moments, ridge_alpha: float | None):
    """Slopes (p, F) and intercepts (F,) from the centered moments of each window."""
    p = len(mean) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        if ridge_alpha is None:
            beta = (moments(0, 1) / moments(1, 1))[None, :]
        else:
            scale = np.stack([_scale(n, mean[1 + j], moments(1 + j, 1 + j)) for j in range(p)])

            def system(i: int, j: int) -> np.ndarray:
                out = moments(1 + i, 1 + j) / (scale[i] * scale[j])
                return out + ridge_alpha if i == j else out

            rhs = np.stack([moments(0, 1 + j) for j in range(p)]) / scale
            beta = _cholesky_solve(system, rhs) / scale
        alpha = mean[0] - (beta * mean[1:]).sum(axis=0)
    return beta, alpha


def _scale(n: np.ndarray, mean: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """StandardScaler's scale: population std, 1 for a constant column (sklearn's tolerance)."""
    var = ss / n
    return np.where(_constant(n, mean, var), 1.0, np.sqrt(np.maximum(var, 0.0)))


def _constant(n, mean, var):
    # sklearn.preprocessing._data._is_constant_feature
    return var <= n * _EPS * var + (n * mean * _EPS) ** 2


def _cholesky_solve(a, b: np.ndarray) -> np.ndarray:
    """Solve A x = b for symmetric positive definite A, vectorized over windows.

    ``a(i, j)`` returns A[i, j] (F,) for i >= j; b is (p, F).
    """
    p = len(b)
    chol = np.empty((p, p, b.shape[1]))
    for j in range(p):
        chol[j, j] = np.sqrt(a(j, j) - (chol[j, :j] ** 2).sum(axis=0))
        for i in range(j + 1, p):
            chol[i, j] = (a(i, j) - (chol[i, :j] * chol[j, :j]).sum(axis=0)) / chol[j, j]
    z = np.empty_like(b)
    for i in range(p):
        z[i] = (b[i] - (chol[i, :i] * z[:i]).sum(axis=0)) / chol[i, i]
    out = np.empty_like(b)
    for i in reversed(range(p)):
        out[i] = (z[i] - (chol[i + 1 :, i] * out[i + 1 :]).sum(axis=0)) / chol[i, i]
    return out


def _ssr_from_sums(beta: np.ndarray, moments: _Moments) -> np.ndarray:
    """syy - 2 b'sxy + b'Sxx b: the residual sum of squares of any slopes b."""
    p = len(beta)
    ssr = moments(0, 0).copy()
    for a in range(p):
        ssr -= 2.0 * beta[a] * moments(0, 1 + a)
        ssr += beta[a] ** 2 * moments(1 + a, 1 + a)
        for b in range(a + 1, p):
            ssr += 2.0 * beta[a] * beta[b] * moments(1 + a, 1 + b)
    return ssr


def _refit_exact(y, x, valid, lo, hi, s_idx, ridge_alpha):
    """Two-pass fits with explicit residuals from the gathered rows of the given windows."""
    q = x.shape[1] + 1
    F = len(lo)
    iu, ju = np.triu_indices(q)
    beta = np.empty((q - 1, F))
    alpha = np.empty(F)
    ssr = np.empty(F)
    tri = np.empty((len(iu), F))
    status = np.full(F, _OK)
    span = int((hi - lo).max())
    step = max(1, 2_000_000 // (span * q))
    for a in range(0, F, step):
        part = slice(a, min(a + step, F))
        rows = lo[part, None] + np.arange(span)  # (f, span)
        inside = rows < hi[part, None]
        rows = np.minimum(rows, len(y) - 1)
        cols = s_idx[part, None]
        w = inside & valid[rows, cols]
        z = np.where(w[:, :, None], np.concatenate([y[rows, cols][:, :, None], x[rows]], axis=2), 0.0)
        n = w.sum(axis=1).astype(np.float64)
        mean = z.sum(axis=1).T / n  # (q, f)
        zc = np.where(w[:, :, None], z - mean.T[:, None, :], 0.0)
        moments = _Moments(np.einsum("fwi,fwj->ijf", zc, zc)[iu, ju], q)
        b, al = _coefficients(n, mean, moments, ridge_alpha)
        resid = zc[:, :, 0] - np.einsum("fwj,jf->fw", zc[:, :, 1:], b)
        ssr[part] = np.einsum("fw,fw->f", resid, resid)
        beta[:, part], alpha[part], tri[:, part] = b, al, moments.tri
        constant = np.stack([_constant(n, mean[j], moments(j, j) / n) for j in range(q)])
        code = np.where(constant[0], _Y_CONSTANT, _OK)
        if ridge_alpha is None:
            code = np.where((code == _OK) & constant[1:].any(axis=0), _X_CONSTANT, code)
        status[part] = code
    return beta, alpha, ssr, tri, status


def _statistics(n: np.ndarray, moments: _Moments, beta: np.ndarray, ssr: np.ndarray, *, ols: bool):
    """R^2 (F,); for OLS also the std error and two-sided p-value of the slope (F,), else NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r_squared = 1.0 - ssr / moments(0, 0)
        if not ols:
            nan = np.full(len(ssr), np.nan)
            return r_squared, nan, nan
        df = n - 2.0
        std_error = np.sqrt(np.maximum(ssr, 0.0) / df / moments(1, 1))
        p_value = 2.0 * stdtr(df, -np.abs(beta[0] / std_error))  # = 2 t.sf(|t|, df)
    return r_squared, std_error, p_value


# ----------------------------------------------------------------------------------------------
# the long frames


def _exposure_frame(pieces, fits: list[_Fit], symbols: list[str], targets: pd.DatetimeIndex) -> pd.DataFrame:
    names = [name for fit in fits for name in fit.names]
    methods = [fit.method for fit in fits for _ in fit.names]
    first = np.cumsum([0] + [len(fit.names) for fit in fits])
    runs: list[tuple] = []  # per (factor, block): s, d, f, floats (5, F), n_obs
    for i, fit in enumerate(fits):
        for j in range(len(fit.names)):
            for _, start, result in (piece for piece in pieces if piece[0] == i):
                n_obs = result.n[result.d_idx, result.s_idx]
                floats = (result.beta[j], result.alpha, result.r_squared, result.std_error, result.p_value)
                runs.append((result.s_idx + start, result.d_idx, first[i] + j, floats, n_obs))
    total = sum(len(run[0]) for run in runs)
    s = np.empty(total, dtype=np.int64)
    d = np.empty(total, dtype=np.int64)
    f = np.empty(total, dtype=np.int64)
    n_obs = np.empty(total, dtype=np.int64)
    floats = np.empty((5, total))
    at = 0
    for rs, rd, rf, rfloats, rn in runs:
        part = slice(at, at + len(rs))
        s[part], d[part], f[part], n_obs[part] = rs, rd, rf, rn
        for c in range(5):
            floats[c, part] = rfloats[c]
        at += len(rs)
    # runs are in (factor, symbol, date) order already
    frame = pd.DataFrame(floats.T, columns=EXPOSURE_COLUMNS[3:8], copy=False)
    frame.insert(0, "symbol", _labels(symbols, s))
    frame.insert(1, "date", targets.values.astype("datetime64[ns]")[d])
    frame.insert(2, "factor", _labels(names, f))
    frame["n_obs"] = n_obs
    frame["method"] = _labels(methods, f)
    return frame


def _labels(labels: list[str], codes: np.ndarray):
    return pd.array(labels, dtype="str").take(codes)


def _failure_events(result: _BlockResult, fit: _Fit, start: int, targets: pd.DatetimeIndex) -> list[tuple]:
    failed = result.status != _OK  # (D, S)
    if not failed.any():
        return []
    cols = np.flatnonzero(failed.any(axis=0))
    last = len(failed) - 1 - np.argmax(failed[::-1, cols], axis=0)
    events = []
    for col, d in zip(cols.tolist(), last.tolist(), strict=False):
        day = f"{targets[d]:%Y-%m-%d}"
        code = result.status[d, col]
        n = int(result.n[d, col])
        for name in fit.names:
            if code == _TOO_FEW:
                message = f"{name}: {n} returns in the {fit.window}-return window on {day}, need {fit.min_obs}"
            elif code == _Y_CONSTANT:
                message = f"{name}: the symbol's return has no variance over the {n}-return window on {day}"
            elif code == _X_CONSTANT:
                message = f"{name}: factor return {fit.label(0)} has no variance over the {n}-return window on {day}"
            else:
                message = f"{name}: the fit is numerically degenerate over the {n}-return window on {day}"
            events.append((start + col, name, d, message))
    return events


def _failure_frame(events: list[tuple], fits: list[_Fit], symbols: list[str], targets) -> pd.DataFrame:
    latest: dict[tuple[int, str], tuple[int, str]] = {}
    for s, name, d, message in events:
        if (s, name) not in latest or d > latest[(s, name)][0]:
            latest[(s, name)] = (d, message)
    order = {name: i for i, name in enumerate(name for fit in fits for name in fit.names)}
    keys = sorted(latest, key=lambda key: (key[0], order[key[1]]))
    return pd.DataFrame(
        {
            "symbol": pd.array([symbols[s] for s, _ in keys], dtype="str"),
            "stage": pd.array([f"factor:{name}" for _, name in keys], dtype="str"),
            "date": targets.values.astype("datetime64[ns]")[np.array([latest[k][0] for k in keys], dtype=np.intp)],
            "error": pd.array([latest[k][1] for k in keys], dtype="str"),
        }
    )
