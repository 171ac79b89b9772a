"""Deterministic benchmark portfolios as positions CSV text (contract §2).

Each portfolio: 10-20 public holdings drawn from the universe (about a quarter of them SHORT),
a few with a later entry and a few closed before the end, and in about a third of the portfolios
one or two listed options (OCC contract symbols on held underlyings; the sample source has no
contract prices, so they are model-priced) — seeded, so every run builds the same book.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import numpy as np

HEADER = (
    "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price,"
    "underlying,strike,expiration,option_type,manual_market_value,sector"
)


def occ_symbol(underlying: str, expiration: dt.date, kind: str, strike: float) -> str:
    return f"{underlying}{expiration:%y%m%d}{kind}{int(round(strike * 1000)):08d}"


def _row(
    symbol,
    qty,
    ptype,
    cls,
    price,
    entry,
    exit_date="",
    exit_price="",
    underlying="",
    strike="",
    expiration="",
    option_type="",
):
    return ",".join(
        str(v)
        for v in [
            symbol,
            qty,
            ptype,
            cls,
            f"{price:.2f}",
            entry,
            exit_date,
            exit_price,
            underlying,
            strike,
            expiration,
            option_type,
            "",
            "",
        ]
    )


def portfolio_csv(
    rng: np.random.Generator,
    universe: Sequence[str],
    *,
    sessions: Sequence[dt.date],
    price_of: Callable[[str, dt.date], float],
    n_holdings: tuple[int, int] = (10, 20),
    options: int = 0,
    equity: float = 10_000_000.0,
) -> str:
    """One portfolio's CSV: inception on sessions[0]; `sessions` are the build's sessions."""
    first = sessions[0]
    count = int(rng.integers(n_holdings[0], n_holdings[1] + 1))
    held = [str(s) for s in rng.choice(np.asarray(universe), size=min(count, len(universe)), replace=False)]
    lines = [HEADER]
    budget = equity / max(count, 1)
    for i, symbol in enumerate(held):
        side = "SHORT" if rng.random() < 0.25 else "LONG"
        entry = first if i < 2 or rng.random() < 0.8 else sessions[int(rng.integers(1, max(2, len(sessions) // 2)))]
        price = price_of(symbol, entry)
        qty = max(1, int(budget * rng.uniform(0.5, 1.5) / price))
        exit_date = exit_price = ""
        if len(sessions) > 4 and rng.random() < 0.1:
            day = sessions[int(rng.integers(max(1, sessions.index(entry) + 1), len(sessions)))]
            if day > entry:
                exit_date, exit_price = day.isoformat(), f"{price_of(symbol, day):.2f}"
        lines.append(_row(symbol, qty, side, "PUBLIC", price, entry.isoformat(), exit_date, exit_price))
    for _ in range(options):
        underlying = held[int(rng.integers(len(held)))]
        spot = price_of(underlying, first)
        kind = "C" if rng.random() < 0.5 else "P"
        ptype = ("L" if rng.random() < 0.6 else "S") + kind
        expiration = first + dt.timedelta(days=int(rng.integers(60, 400)))
        strike = float(round(spot * rng.uniform(0.85, 1.15)))
        symbol = occ_symbol(underlying, expiration, kind, strike)
        qty = max(1, int(budget / (spot * 100)))
        lines.append(
            _row(
                symbol,
                qty,
                ptype,
                "OPTIONS",
                spot * 0.05,
                first.isoformat(),
                underlying=underlying,
                strike=strike,
                expiration=expiration.isoformat(),
                option_type="CALL" if kind == "C" else "PUT",
            )
        )
    return "\n".join(lines) + "\n"


def book(
    universe: Sequence[str],
    n_portfolios: int,
    *,
    sessions: Sequence[dt.date],
    price_of: Callable[[str, dt.date], float],
    seed: int = 20261128,
) -> dict[str, str]:
    """{portfolio_id: csv text} for `n_portfolios` portfolios over `universe`."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_portfolios):
        options = int(rng.integers(1, 3)) if i % 3 == 0 else 0
        out[f"bench_pf_{i:03d}"] = portfolio_csv(rng, universe, sessions=sessions, price_of=price_of, options=options)
    return out
