"""The environment variables of the contract (§1), read in one place, at call time."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_START_DATE = "2010-01-04"
DEFAULT_PRICE_OVERLAP = 5  # stored sessions every fetch re-reads before its first date
DEFAULT_PRICE_TOLERANCE = 1e-6  # relative difference below which a re-read price is the stored one


def _number(name: str, default, kind, minimum):
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a {kind.__name__} >= {minimum}") from None
    if not value >= minimum:
        raise ValueError(f"{name}={text!r}: expected a {kind.__name__} >= {minimum}")
    return value


def price_overlap() -> int:
    """FACTOR_PLATFORM_PRICE_OVERLAP: stored sessions a fetch re-reads to catch re-basings and restatements."""
    return _number("FACTOR_PLATFORM_PRICE_OVERLAP", DEFAULT_PRICE_OVERLAP, int, 1)


def price_tolerance() -> float:
    """FACTOR_PLATFORM_PRICE_TOLERANCE: relative difference at which a re-read price counts as changed."""
    return _number("FACTOR_PLATFORM_PRICE_TOLERANCE", DEFAULT_PRICE_TOLERANCE, float, 0.0)


def dagster_home() -> Path | None:
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) if home else None


def default_db_url() -> str:
    """A SQLite file under $DAGSTER_HOME, or ./.factor_platform/ when it is unset."""
    home = dagster_home()
    folder = home if home is not None else Path.cwd() / ".factor_platform"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'factor_platform.db'}"


@dataclass(frozen=True)
class Settings:
    db_url: str
    price_source: str
    calendar: str
    start_date: dt.date

    @classmethod
    def from_env(cls) -> "Settings":
        start = os.environ.get("FACTOR_PLATFORM_START_DATE", DEFAULT_START_DATE)
        try:
            start_date = dt.date.fromisoformat(start)
        except ValueError as exc:
            raise ValueError(f"FACTOR_PLATFORM_START_DATE={start!r} is not an ISO date (YYYY-MM-DD)") from exc
        return cls(
            db_url=os.environ.get("FACTOR_PLATFORM_DB_URL") or default_db_url(),
            price_source=os.environ.get("FACTOR_PLATFORM_PRICE_SOURCE", "yfinance"),
            calendar=os.environ.get("FACTOR_PLATFORM_CALENDAR", "XNYS"),
            start_date=start_date,
        )
