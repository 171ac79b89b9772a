"""The portfolio layer's nightly cost by a portfolio's age: one session of a 20-holding book whose
inception is 1, 3 or 10 years back, computed the way a nightly computes it (the session after a
stored snapshot) and from inception (no snapshot before the session: a first build, or after a
re-import). A nightly's cost must not grow with history, so the baseline of each age is the
1-year book's nightly: ratio ~1 is flat.

    .venv/bin/python bench/portfolio_age.py [--repeat 5] [--postgres]

Prints `bench: portfolio_age_<years>y_<path> seconds=... baseline=portfolio_age_1y_<path> ...`.
The prices are the sample source's, written once per age into a scratch database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_line, log, scratch_postgres  # noqa: E402

HOLDINGS = [f"AGE{i:02d}" for i in range(20)]
AGES = (1, 3, 10)


def _build(db, years: int, last: dt.date):
    from factor_platform.domain import sessions
    from factor_platform.layers.books import import_portfolio
    from factor_platform.layers.names import PORTFOLIO_ASSETS
    from factor_platform.layers.portfolio import RISK_LOOKBACK, update_portfolios
    from factor_platform.layers.prices import update_prices
    from factor_platform.sources.sample import SampleSource

    inception = sessions.session_on_or_after(last - dt.timedelta(days=365 * years), "XNYS")
    days = [d.date() for d in sessions.sessions_in_range(inception, last)]
    first = sessions.sessions_before(inception, RISK_LOOKBACK + 5, "XNYS")
    update_prices(db, SampleSource(), HOLDINGS, [first, last], calendar="XNYS")
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "book.csv"
        rows = [
            f"{s},{100 + 10 * i},{'SHORT' if i % 5 == 4 else 'LONG'},PUBLIC,{50 + i},{inception},,"
            for i, s in enumerate(HOLDINGS)
        ]
        csv.write_text(
            "symbol,quantity,position_type,investment_class,entry_price,entry_date,exit_date,exit_price\n"
            + "\n".join(rows)
            + "\n"
        )
        import_portfolio(db, csv, portfolio_id=f"age{years}", equity=1_000_000)
    update_portfolios(db, [f"age{years}"], days[:-1], list(PORTFOLIO_ASSETS))
    return days


def _time(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="a scratch Postgres database instead of SQLite")
    args = parser.parse_args()

    from factor_platform.domain import sessions
    from factor_platform.layers.names import PORTFOLIO_ASSETS
    from factor_platform.layers.portfolio import update_portfolios
    from factor_platform.storage import Database

    last = sessions.session_on_or_after(dt.date(2026, 11, 27), "XNYS")
    results: dict[tuple[int, str], float] = {}
    for years in AGES:
        with tempfile.TemporaryDirectory() as folder:
            with scratch_postgres("fp_bench_age") if args.postgres else _sqlite(folder) as url:
                db = Database(url)
                db.init_schema()
                days = _build(db, years, last)
                pid = f"age{years}"
                tables = list(PORTFOLIO_ASSETS)
                results[(years, "nightly")] = _time(
                    lambda: update_portfolios(db, [pid], days[-1:], tables), args.repeat
                )
                # From inception: what a first build (or a run after a re-import) does for one session.
                db.delete("portfolio_snapshots", {"portfolio_id": pid, "date": (days[-2], days[-2])})
                results[(years, "inception")] = _time(
                    lambda: update_portfolios(db, [pid], days[-1:], tables), args.repeat
                )
                db.dispose()
        log(
            f"{years:>2} years ({len(days)} sessions): nightly {results[(years, 'nightly')]:.3f} s, "
            f"from inception {results[(years, 'inception')]:.3f} s"
        )
    for path in ("nightly", "inception"):
        for years in AGES:
            print(
                bench_line(
                    f"portfolio_age_{years}y_{path}",
                    results[(years, path)],
                    f"portfolio_age_1y_{path}",
                    results[(1, path)],
                ),
                flush=True,
            )


class _sqlite:
    def __init__(self, folder: str):
        self.url = f"sqlite:///{folder}/analytics.db"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc) -> None:
        return None


if __name__ == "__main__":
    main()
