"""Worker: the symbol layer's math, vectorized (calc) vs a per-(symbol, date) reference loop.

Measured: `simple_returns` + `calc.factors.factor_exposures` + `calc.metrics.symbol_metrics` over
the whole rectangle (symbols x sessions, every factor of data/factors.toml), on prices from the
`sample` source with the 300-session lookback the asset loads. Best of `repeats`.

Baseline: for a seeded random subset of (symbol, date) pairs, each factor fitted on its own window
with statsmodels `OLS(y, add_constant(x))` (ols, spread) or sklearn `StandardScaler` + `Ridge`
(ridge), and the metrics from that symbol's price series with pandas; the loop's time is
extrapolated linearly to every pair of the rectangle. The sampled pairs' betas are compared with
the vectorized ones (max |difference| is reported).

args: {"symbols": int, "sessions": int, "end": "YYYY-MM-DD", "pairs": int, "repeats": int}
"""

from __future__ import annotations

import datetime as dt
import time

from common import emit, log, quiet_warnings, worker_args


def reference_loop(returns, prices, close, regressions, pairs):
    """The per-pair reference: rows {symbol, date, factor, beta} and the loop's seconds."""
    import numpy as np
    import pandas as pd
    import statsmodels.api as sm
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    etfs_all = list(dict.fromkeys(t for reg in regressions for ts in reg.factors.values() for t in ts))
    rows = []
    started = time.perf_counter()
    for symbol, day in pairs:
        upto = returns[[symbol, *etfs_all]].loc[:day]  # only the columns this pair needs
        for reg in regressions:
            if reg.method == "ridge":
                etfs = [t[0] for t in reg.factors.values()]
                window = upto[[symbol, *etfs]].dropna().tail(reg.window)
                if len(window) < reg.min_obs:
                    continue
                x = window[etfs].to_numpy()
                pipe = make_pipeline(StandardScaler(), Ridge(alpha=reg.alpha)).fit(x, window[symbol].to_numpy())
                betas = pipe[-1].coef_ / pipe[0].scale_
                pipe.score(x, window[symbol].to_numpy())  # the in-sample R^2 the table stores
                rows.extend((symbol, day, name, b) for name, b in zip(reg.factors, betas, strict=True))
                continue
            for name, tickers in reg.factors.items():
                x = upto[tickers[0]] if len(tickers) == 1 else upto[tickers[0]] - upto[tickers[1]]
                window = pd.concat([upto[symbol], x.rename("_x")], axis=1).dropna().tail(reg.window)
                if len(window) < reg.min_obs:
                    continue
                fit = sm.OLS(window[symbol].to_numpy(), sm.add_constant(window["_x"].to_numpy())).fit()
                _ = (fit.params, fit.rsquared, fit.bse, fit.pvalues, fit.nobs)
                rows.append((symbol, day, name, fit.params[1]))
        p = prices[symbol].loc[:day].dropna()
        c = close[symbol].loc[:day].dropna()
        daily = p.pct_change()
        _ = {f"return_{k}d": p.iloc[-1] / p.iloc[-1 - k] - 1 for k in (1, 5, 21, 63, 252)}
        _ = {f"volatility_{k}d": daily.tail(k).std(ddof=1) * np.sqrt(252) for k in (21, 63)}
        _ = (c.tail(252).max(), c.tail(252).min())
    seconds = time.perf_counter() - started
    return pd.DataFrame(rows, columns=["symbol", "date", "factor", "beta"]), seconds


def main() -> None:
    args = worker_args()
    quiet_warnings()
    import numpy as np
    from dagster_floor import symbol_names

    from factor_platform.calc.factors import factor_exposures
    from factor_platform.calc.metrics import symbol_metrics
    from factor_platform.calc.returns import simple_returns
    from factor_platform.domain import sessions
    from factor_platform.domain.factor_models import LOOKBACK_SESSIONS, factor_names, factor_tickers, load_regressions
    from factor_platform.sources import price_source

    regressions = load_regressions()
    symbols = symbol_names(args["symbols"])
    end = dt.date.fromisoformat(args["end"])
    days = sessions.sessions_in_range(sessions.sessions_before(end, args["sessions"] - 1), end)
    lookback = sessions.sessions_before(days[0].date(), LOOKBACK_SESSIONS)
    t0 = time.perf_counter()
    frame = price_source("sample").fetch_prices(symbols + factor_tickers(regressions), lookback, end).frame
    frame = frame.assign(P=frame["adj_close"].where(frame["adj_close"].notna(), frame["close"]))
    prices = frame.pivot(index="date", columns="symbol", values="P").astype("float64")
    close = frame.pivot(index="date", columns="symbol", values="close").astype("float64")
    log(
        f"  symbol_math: sample prices {prices.shape[0]} sessions x {prices.shape[1]} symbols in {time.perf_counter() - t0:.1f} s"
    )

    best = float("inf")
    for _ in range(args.get("repeats", 3)):
        started = time.perf_counter()
        returns = simple_returns(prices)
        exposures, failures = factor_exposures(returns, regressions, symbols=symbols, dates=days)
        metrics = symbol_metrics(prices, close, symbols=symbols, dates=days)
        best = min(best, time.perf_counter() - started)
    n_pairs = len(symbols) * len(days)
    n_factors = len(factor_names(regressions))

    rng = np.random.default_rng(20261128)
    picks = rng.choice(n_pairs, size=min(args["pairs"], n_pairs), replace=False)
    pairs = [(symbols[i % len(symbols)], days[i // len(symbols)]) for i in picks]
    reference, loop_seconds = reference_loop(returns, prices, close, regressions, pairs)
    baseline = loop_seconds / len(pairs) * n_pairs
    merged = reference.merge(
        exposures[["symbol", "date", "factor", "beta"]], on=["symbol", "date", "factor"], suffixes=("_ref", "")
    )
    worst = float((merged["beta"] - merged["beta_ref"]).abs().max()) if len(merged) else float("nan")
    log(
        f"  symbol_math: {len(symbols)} symbols x {len(days)} sessions x {n_factors} factors = {len(exposures):,} exposure rows "
        f"+ {len(metrics):,} metric rows in {best:.3f} s (best of {args.get('repeats', 3)}); {len(failures)} factor failures"
    )
    log(
        f"  symbol_math: baseline = statsmodels/sklearn loop on {len(pairs)} random (symbol, date) pairs: {loop_seconds:.2f} s "
        f"({1000 * loop_seconds / len(pairs):.1f} ms/pair), extrapolated linearly x{n_pairs / len(pairs):.0f} to {n_pairs:,} pairs "
        f"= {baseline:.1f} s; max |beta vectorized - reference| over {len(merged)} sampled fits = {worst:.2e}"
    )
    emit(
        {
            "seconds": best,
            "baseline_seconds": baseline,
            "pairs_sampled": len(pairs),
            "pairs_total": n_pairs,
            "loop_seconds": loop_seconds,
            "exposure_rows": len(exposures),
            "metric_rows": len(metrics),
            "max_beta_diff": worst,
        }
    )


if __name__ == "__main__":
    main()
