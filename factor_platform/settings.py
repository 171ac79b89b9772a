"""The environment, read in one place, at call time: the contract's variables (§1) and the
project's own (docs/contract-additions.md). Nothing else in the package touches `os.environ`;
`export` is how a process hands a default to the processes it starts (Dagster's, the workers)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_START_DATE = "2010-01-04"
DEFAULT_PRICE_OVERLAP = 5  # stored sessions every fetch re-reads before its first date
DEFAULT_PRICE_TOLERANCE = 1e-6  # relative difference below which a re-read price is the stored one
DEFAULT_BREAK_THRESHOLD = 0.4  # |daily return| beyond which a move without a corporate action is reported
DEFAULT_PARTITION_MONTHS = 0  # every session since the start date is a Dagster partition (docs/scale.md)
DEFAULT_MAX_ATTEMPTS = 3  # failed fetches of a (symbol, stage) before it is skipped
MAX_DEFAULT_WORKERS = 4  # each worker holds its chunk's frames (~0.3-0.7 GiB at 500 symbols) and its connections
WORKERS_ENV = "FACTOR_PLATFORM_WORKERS"
CELERY_BROKER_ENV = "FACTOR_PLATFORM_CELERY_BROKER"
CELERY_BACKEND_ENV = "FACTOR_PLATFORM_CELERY_BACKEND"
CELERY_QUEUE_ENV = "FACTOR_PLATFORM_CELERY_QUEUE"


def get(name: str) -> str | None:
    """A variable's value; None when unset or blank."""
    value = os.environ.get(name)
    return value if value is not None and value.strip() != "" else None


def export(name: str, value: str, *, overwrite: bool = False) -> None:
    """Set a variable for this process and the ones it starts (kept when already set, unless `overwrite`)."""
    if overwrite:
        os.environ[name] = value
    else:
        os.environ.setdefault(name, value)


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


def break_threshold() -> float:
    """FACTOR_PLATFORM_BREAK_THRESHOLD: |close-to-close return| above which a session without a corporate
    action is an unexplained price break (reported, never corrected)."""
    return _number("FACTOR_PLATFORM_BREAK_THRESHOLD", DEFAULT_BREAK_THRESHOLD, float, 0.0)


def max_attempts() -> int:
    """FACTOR_PLATFORM_MAX_ATTEMPTS: failed fetches of a (symbol, stage) before it is marked skipped."""
    return _number("FACTOR_PLATFORM_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, int, 1)


def partition_months() -> int:
    """FACTOR_PLATFORM_PARTITION_MONTHS: the months of sessions that are Dagster partitions (the current
    month and the months before it); older sessions are history, computed and recorded without
    per-partition events (docs/scale.md). 0: every session since the start date."""
    return _number("FACTOR_PLATFORM_PARTITION_MONTHS", DEFAULT_PARTITION_MONTHS, int, 0)


def workers() -> int:
    """FACTOR_PLATFORM_WORKERS, else one per core (at most MAX_DEFAULT_WORKERS)."""
    value = get(WORKERS_ENV) or str(min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{WORKERS_ENV}={value!r}: expected a whole number >= 1")
    return int(value)


def factors_file() -> Path | None:
    """FACTOR_PLATFORM_FACTORS: a TOML file of factor definitions (None: the packaged one)."""
    value = get("FACTOR_PLATFORM_FACTORS")
    return Path(value) if value else None


def stress_scenarios_file() -> Path | None:
    """FACTOR_PLATFORM_STRESS_SCENARIOS: a TOML file of stress scenarios (None: the packaged one)."""
    value = get("FACTOR_PLATFORM_STRESS_SCENARIOS")
    return Path(value) if value else None


def dagster_home() -> Path | None:
    home = get("DAGSTER_HOME")
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
    def from_env(cls) -> Settings:
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
