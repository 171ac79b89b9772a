"""`factor-platform demo`: the offline end-to-end demo on the `sample` source.

One year of sessions for ~30 symbols (the eight factor ETFs included) and three portfolios — long-only
equities, long/short with options, and one holding a private asset — imported, materialized through
Dagster, and summarized.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import nullcontext

from factor_platform.domain import sessions
from factor_platform.running.instance import prepare_dagster_home
from factor_platform.settings import Settings, export
from factor_platform.storage import Database

STOCKS = [
    "AAPL",
    "MSFT",
    "NVDA",
    "AMZN",
    "GOOGL",
    "META",
    "JPM",
    "XOM",
    "JNJ",
    "PG",
    "KO",
    "PFE",
    "CAT",
    "HD",
    "UNH",
    "V",
    "DIS",
    "BA",
    "NFLX",
    "TSLA",
    "COST",
    "WMT",
]
HEADER = "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price,underlying,strike,expiration,option_type,manual_market_value,sector"


def _occ(underlying: str, expiration: dt.date, kind: str, strike: float) -> str:
    return f"{underlying}{expiration:%y%m%d}{kind}{int(round(strike * 1000)):08d}"


def demo_portfolios(inception: dt.date, end: dt.date, price_of: Callable[[str, dt.date], float]) -> dict[str, str]:
    """CSV text of the three demo portfolios, entry prices at the sample source's prices."""
    mid = sessions.sessions_before(end, 40)
    expiry_near = sessions.sessions_before(end, 10)  # one option expires inside the window
    expiry_far = end + dt.timedelta(days=120)

    def row(symbol, dollars, ptype, cls, day, **extra):
        """A position of about `dollars` of `symbol` (options: of underlying notional) entered on `day`."""
        price = extra.pop("entry_price", None)
        reference = price_of(extra.get("underlying") or symbol, day)
        per_unit = reference * (100 if cls == "OPTIONS" else 1)
        qty = max(1, round(dollars / per_unit))
        price = price if price is not None else round(reference, 2)
        fields = dict(
            exit_date="",
            exit_price="",
            underlying="",
            strike="",
            expiration="",
            option_type="",
            manual_market_value="",
            sector="",
        )
        fields.update({k: str(v) for k, v in extra.items()})
        return ",".join(
            [symbol, str(qty), ptype, cls, str(price), day.isoformat()] + [fields[k] for k in HEADER.split(",")[6:]]
        )

    long_only = [
        row(s, 170_000, "LONG", "PUBLIC", inception)
        for s in ["AAPL", "MSFT", "NVDA", "JPM", "JNJ", "PG", "KO", "COST", "HD", "UNH"]
    ]
    long_only.append(
        row("XOM", 150_000, "LONG", "PUBLIC", inception, exit_date=mid, exit_price=round(price_of("XOM", mid), 2))
    )
    u_near, u_far = price_of("AAPL", inception), price_of("NVDA", inception)
    long_short = [
        *(row(s, 350_000, "LONG", "PUBLIC", inception) for s in ["AMZN", "GOOGL", "META", "V"]),
        *(row(s, 200_000, "SHORT", "PUBLIC", inception) for s in ["TSLA", "BA", "DIS", "TLT"]),
        # Expires inside the window: closed on its expiration at intrinsic value.
        row(
            _occ("AAPL", expiry_near, "C", round(u_near)),
            200_000,
            "LC",
            "OPTIONS",
            inception,
            entry_price=round(u_near * 0.06, 2),
            underlying="AAPL",
            strike=round(u_near),
            expiration=expiry_near,
            option_type="CALL",
            exit_date=expiry_near,
            exit_price=round(max(price_of("AAPL", expiry_near) - round(u_near), 0.0), 2),
        ),
        row(
            _occ("NVDA", expiry_far, "P", round(u_far * 0.9)),
            150_000,
            "SP",
            "OPTIONS",
            inception,
            entry_price=round(u_far * 0.03, 2),
            underlying="NVDA",
            strike=round(u_far * 0.9),
            expiration=expiry_far,
            option_type="PUT",
        ),
    ]
    private = [row(s, 300_000, "LONG", "PUBLIC", inception) for s in ["WMT", "PFE", "CAT", "NFLX"]]
    private.append(
        ",".join(
            [
                "ACME_PRIVATE",
                "1000",
                "LONG",
                "PRIVATE",
                "150",
                inception.isoformat(),
                "",
                "",
                "",
                "",
                "",
                "",
                "180000",
                "Industrials",
            ]
        )
    )
    private.append(row("SPY", 400_000, "LONG", "PUBLIC", inception))
    return {
        "long_only": "\n".join([HEADER, *long_only]) + "\n",
        "long_short_options": "\n".join([HEADER, *long_short]) + "\n",
        "private_blend": "\n".join([HEADER, *private]) + "\n",
    }


def _split_text(ratio: float) -> str:
    return f"{ratio:g}:1 split" if ratio >= 1 else f"1:{1 / ratio:g} reverse split"


def _summary(db: Database, portfolio_ids: list[str]) -> str:
    lines = []
    counts = {
        t: db.count(t)
        for t in [
            "prices",
            "symbol_factor_exposures",
            "symbol_metrics",
            "company_profiles",
            "fundamentals",
            "position_values",
            "portfolio_snapshots",
            "portfolio_factor_exposures",
            "portfolio_sector_weights",
            "portfolio_risk",
            "portfolio_correlations",
            "stress_results",
        ]
    }
    lines.append("rows per table: " + ", ".join(f"{t}={n:,}" for t, n in counts.items()))
    actions = db.read("corporate_actions")
    if len(actions):
        shown = [
            f"{r.symbol} {r.date:%Y-%m-%d} "
            + (_split_text(r.value) if r.kind == "split" else f"dividend {r.value:.2f}")
            for r in actions.sort_values("date").itertuples()
        ]
        lines.append(f"corporate actions ({len(actions)}): " + ", ".join(shown[-8:]))
    rebased = db.read("price_rebasings")
    for r in rebased.itertuples():
        lines.append(
            f"re-based stored history of {r.symbol} before {r.before_date:%Y-%m-%d}: close x {r.close_factor:.6g}, "
            f"adj_close x {r.adj_factor:.6g}"
        )
    for pid in portfolio_ids:
        snaps = db.read("portfolio_snapshots", {"portfolio_id": pid}).sort_values("date")
        if snaps.empty:
            lines.append(f"\n{pid}: no snapshots")
            continue
        last = snaps.iloc[-1]
        day = last["date"]
        lines.append(
            f"\n{pid} on {day:%Y-%m-%d}: equity {last['equity']:,.0f}  cumulative P&L {last['cumulative_pnl']:+,.0f}"
            f"  day {last['daily_pnl']:+,.0f} ({last['daily_return']:+.2%})  gross {last['gross_exposure']:,.0f}"
            f"  net {last['net_exposure']:,.0f}  positions {int(last['n_positions'])}"
            f"  complete {'yes' if last['is_complete'] else 'NO'}"
        )
        factors = db.read("portfolio_factor_exposures", {"portfolio_id": pid, "date": day})
        if len(factors):
            top = factors.reindex(factors["beta"].abs().sort_values(ascending=False).index).head(4)
            lines.append(
                "  top exposures: "
                + ", ".join(f"{r.factor} {r.beta:+.2f} ({r.exposure_dollar:+,.0f})" for r in top.itertuples())
            )
        stress = db.read("stress_results", {"portfolio_id": pid, "date": day})
        if len(stress):
            worst = stress.sort_values("pnl").iloc[0]
            lines.append(f"  worst stress: {worst['scenario']} {worst['pnl']:+,.0f} ({worst['pnl_pct']:+.1%})")
        risk = db.read("portfolio_risk", {"portfolio_id": pid, "date": day})
        if len(risk):
            r = risk.iloc[0]
            lines.append(
                f"  risk: vol 63d {r['volatility_63d']:.1%}, EWMA {r['volatility_forecast']:.1%}, effective N {r['effective_n']:.1f}"
            )
    return "\n".join(lines)


def run_demo(progress: Callable[[str], None] | None = None) -> int:
    """The demo; its lines and the materializes' progress go to `progress`, by default the display of
    `factor-platform materialize` on stderr (`app.progress`); the summary goes to stdout."""
    from factor_platform.app.progress import progress_display
    from factor_platform.layers.books import import_portfolio
    from factor_platform.running.execution import materialize
    from factor_platform.sources.sample import traded_price

    export("FACTOR_PLATFORM_PRICE_SOURCE", "sample")
    home = prepare_dagster_home()
    settings = Settings.from_env()
    db = Database(settings.db_url)
    db.init_schema()
    end = sessions.latest_closed_session(name=settings.calendar)
    start = sessions.sessions_before(end, 251, settings.calendar)
    inception = sessions.sessions_before(end, 125, settings.calendar)

    def price_of(symbol: str, day: dt.date) -> float:
        """The price as traded on `day`: a book is entered as traded, before later splits."""
        return traded_price(symbol, day, calendar=settings.calendar)

    folder = home / "demo"
    folder.mkdir(exist_ok=True)
    ids = []
    # One display for both materializes: the second one's plan adds to the total.
    with progress_display() if progress is None else nullcontext(progress) as report:
        for pid, text in demo_portfolios(inception, end, price_of).items():
            path = folder / f"{pid}.csv"
            path.write_text(text)
            outcome = import_portfolio(db, path, portfolio_id=pid, name=pid.replace("_", " ").title(), equity=2_000_000)
            report(f"imported {pid}: {outcome['status']}, {outcome['positions']} positions from {path}")
            ids.append(pid)
        report(f"materializing {start}..{end} (sample source, DAGSTER_HOME={home})")
        outcome = materialize(db, start=start, end=end, symbols=STOCKS, settings=settings, progress=report)
        outcome_portfolios = materialize(db, start=start, end=end, portfolios=ids, settings=settings, progress=report)
    print(_summary(db, ids))
    print(
        f"\n{outcome['partitions'] + outcome_portfolios['partitions']:,} partitions in "
        f"{outcome['seconds'] + outcome_portfolios['seconds']:.0f} s. Open the Dagster UI on this instance:\n"
        f"  DAGSTER_HOME={home} .venv/bin/factor-platform ui      # then http://127.0.0.1:3000\n"
        f"Status:  DAGSTER_HOME={home} .venv/bin/factor-platform status\n"
        f"Report:  DAGSTER_HOME={home} .venv/bin/factor-platform report --portfolio long_short_options"
    )
    failures = outcome["failures"] + outcome_portfolios["failures"]
    for failure in failures:
        report(f"FAILED {failure}")
    return 1 if failures else 0
