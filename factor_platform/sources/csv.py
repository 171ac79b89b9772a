"""The ``csv:<path>`` source: a vendor's export of daily prices, validated before any use.

Prices file: columns ``date,symbol,close`` required; ``open,high,low,volume,adj_close`` optional;
any other column is ignored. Header names are matched after stripping, lower-casing and turning
inner spaces into underscores (``Adj Close`` is ``adj_close``); cell values are stripped. Every row
is validated when the file is first read, and any bad row raises ``ValueError`` naming the file,
the row (1 = the first data row; its line in the file too) and the field:

- ``date``: ISO ``YYYY-MM-DD`` only (``01/02/2024`` is refused);
- ``symbol``: non-empty; normalized as a book does (stripped, ASCII letters upper-cased), so a row
  ``aapl`` serves a request for ``AAPL``;
- ``close``: a number > 0; ``open``, ``high``, ``low``, ``adj_close``: empty or a number > 0;
  ``volume``: empty or a number >= 0 (rounded to a whole number);
- two rows with the same (symbol, date): allowed when identical (one is kept), an error otherwise
  -- also when they spell the symbol differently (``aapl`` and ``AAPL``: two feeds, not a repeat).

Rows on dates that are not sessions of the calendar are valid but never returned. A missing
optional column or empty cell is NaN, never filled in (so ``adj_close`` missing means the platform
uses ``close``). The file is read once per (path, modification time, size) and cached.

Profiles: an optional second file, ``<path minus .csv>.profiles.csv`` next to it, with columns
``symbol`` (required) and ``name,sector,industry,market_cap,currency`` (optional), validated the
same way (``market_cap`` empty or a number >= 0). Symbols without a profile are failures.

Corporate actions: an optional third file, ``<path minus .csv>.actions.csv``, with columns
``symbol,date,kind,value``, validated the same way: ``kind`` ``split`` or ``dividend`` (any case),
``value`` a number > 0 (split: new shares per old share; dividend: cash per share on the basis of
the file's ``close``, dated on the ex-date), one row per (symbol, date, kind). A requested symbol
without price rows in the prices file is a failure (the file does not know it); a symbol with
prices but no actions has none, and without an actions file no symbol has any.

Fundamentals: a price export has none; ``fetch_fundamentals`` returns an empty frame and no
failures (there is nothing missing to report).

Name: the source's ``name``, and the ``source`` value of every price and action row it returns, is
``csv:<file name>`` (``csv:vendor.csv``): the base name of the prices path as given, so that two
exports behind a failover list differ, and without its directories, which may be private.

Paths: the source opens only the path it was given and the derived profiles and actions paths.
It refuses (``ValueError``) a path that is a directory or not a regular file, and a symbolic link
that points outside the given file's directory; a missing prices file is ``FileNotFoundError``.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from factor_platform.domain import sessions
from factor_platform.sources.base import (
    ACTION_COLUMNS,
    ACTION_KINDS,
    FUNDAMENTAL_COLUMNS,
    PRICE_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    date_range,
    empty_frame,
    finish_actions,
    finish_prices,
    finish_profiles,
    requested_symbols,
)

__all__ = ["CsvPriceSource"]

_REQUIRED = ("date", "symbol", "close")
_OPTIONAL_PRICES = ("open", "high", "low", "adj_close")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_LISTED_ERRORS = 20
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # "ß" stays "ß"


def companion_path(path: Path, kind: str) -> Path:
    """``prices.csv`` -> ``prices.<kind>.csv`` (a name without ``.csv`` gets the suffix appended)."""
    name = path.name
    stem = name[: -len(".csv")] if name.lower().endswith(".csv") else name
    return path.with_name(f"{stem}.{kind}.csv")


def _checked(path: Path, directory: Path) -> Path | None:
    """The real path to open, None when it does not exist; ValueError when it must be refused."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(directory.resolve()):
            raise ValueError(f"refusing {path}: a symbolic link pointing outside {directory} (to {target})")
    if not path.exists():
        return None
    real = path.resolve()
    if real.is_dir():
        raise ValueError(f"refusing {path}: a directory, not a CSV file")
    if not real.is_file():
        raise ValueError(f"refusing {path}: not a regular file")
    return real


class CsvPriceSource:
    """Prices (and optional profiles and actions) from a vendor CSV export; see the module docstring."""

    def __init__(self, path: str | Path, *, calendar: str = "XNYS") -> None:
        self.path = Path(path)
        # The file name tells two exports apart; its directories stay out (they may be private paths).
        self.name = f"csv:{self.path.name}"
        self.profiles_path = companion_path(self.path, "profiles")
        self.actions_path = companion_path(self.path, "actions")
        self.calendar = calendar
        self._directory = self.path.absolute().parent
        self._lock = threading.Lock()
        if _checked(self.path, self._directory) is None:
            raise FileNotFoundError(f"price CSV {self.path} does not exist")
        for companion in (self.profiles_path, self.actions_path):
            _checked(companion, self._directory)  # refuse a bad companion path now, not mid-run

    def __repr__(self) -> str:
        return f"CsvPriceSource({str(self.path)!r}, calendar={self.calendar!r})"

    def _read(self, path: Path, reader, *args) -> pd.DataFrame | None:
        """``reader``'s frame of ``path`` (checked again at every read), cached by the file's version
        and ``args``."""
        real = _checked(path, self._directory)
        if real is None:
            return None
        stat = real.stat()
        with self._lock:
            return reader(str(real), stat.st_mtime_ns, stat.st_size, *args)

    def load(self) -> pd.DataFrame:
        """All rows of the prices file (PRICE_COLUMNS, every date), validated; cached."""
        rows = self._read(self.path, _read_prices, self.name)
        if rows is None:
            raise FileNotFoundError(f"price CSV {self.path} does not exist")
        return rows

    def symbols(self) -> list[str]:
        """Every symbol of the file: a vendor export names its universe."""
        return sorted(self.load()["symbol"].unique().tolist())

    def load_profiles(self) -> pd.DataFrame | None:
        """All rows of the profiles file (PROFILE_COLUMNS), validated; None when there is no such file."""
        return self._read(self.profiles_path, _read_profiles)

    def load_actions(self) -> pd.DataFrame | None:
        """All rows of the actions file (ACTION_COLUMNS), validated; None when there is no such file."""
        return self._read(self.actions_path, _read_actions, self.name)

    def fetch_prices(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        wanted = requested_symbols(symbols)
        start, end = date_range(start, end)
        rows = self.load()
        rows = rows.loc[rows["symbol"].isin(wanted) & rows["date"].between(pd.Timestamp(start), pd.Timestamp(end))]
        frame = finish_prices(rows, wanted, start, end, self.calendar)
        failures: dict[str, str] = {}
        if len(sessions.sessions_in_range(start, end, self.calendar)):
            found = set(frame["symbol"])
            failures = {
                s: f"no rows in {self.path.name} for {s} between {start} and {end}" for s in wanted if s not in found
            }
        return FetchResult(frame, failures)

    def fetch_profiles(self, symbols: Sequence[str]) -> FetchResult:
        wanted = requested_symbols(symbols)
        profiles = self.load_profiles()
        if profiles is None:
            why = f"no profiles file {self.profiles_path.name} next to {self.path.name}"
            return FetchResult(empty_frame(PROFILE_COLUMNS), {s: why for s in wanted})
        frame = finish_profiles(profiles, wanted)
        found = set(frame["symbol"])
        failures = {s: f"no profile for {s} in {self.profiles_path.name}" for s in wanted if s not in found}
        return FetchResult(frame, failures)

    def fetch_fundamentals(self, symbols: Sequence[str]) -> FetchResult:
        requested_symbols(symbols)
        return FetchResult(empty_frame(FUNDAMENTAL_COLUMNS), {})

    def fetch_actions(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        wanted = requested_symbols(symbols)
        start, end = date_range(start, end)
        known = set(self.load()["symbol"])
        failures = {s: f"no rows in {self.path.name} for {s}" for s in wanted if s not in known}
        actions = self.load_actions()
        if actions is None:
            return FetchResult(empty_frame(ACTION_COLUMNS), failures)
        return FetchResult(finish_actions(actions, [s for s in wanted if s in known], start, end), failures)


# -- reading and validation ------------------------------------------------------------------------
# Frames below keep the label of each data line as read (0 = the line after the header, blank lines
# counted), so that a problem names the row and line a user sees in an editor.


def _where(label: int) -> str:
    return f"row {label + 1} (line {label + 2})"


class _Problems:
    """Row/field errors of one file, reported together (first ones listed) in one ValueError."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.items: list[tuple[int, str]] = []

    def add(self, label: int, field: str, message: str) -> None:
        self.items.append((label, f"{_where(label)}, field {field!r}: {message}"))

    def add_mask(self, mask: pd.Series, values: pd.Series, field: str, message: str) -> None:
        for label in mask.index[mask.to_numpy(dtype=bool)]:
            self.add(int(label), field, f"{values.loc[label]!r} {message}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        items = sorted(self.items)
        listed = [text for _, text in items[:_MAX_LISTED_ERRORS]]
        more = f"\n  ... and {len(items) - len(listed)} more" if len(items) > len(listed) else ""
        if len(items) == 1:
            raise ValueError(f"{self.file_name}: {listed[0]}")
        raise ValueError(f"{self.file_name}: {len(items)} invalid values:\n  " + "\n  ".join(listed) + more)


def _read_text(path: str, required: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """The file as stripped strings ('' = empty), header names stripped and lower-cased."""
    name = Path(path).name
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{name}: the file is empty (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: not a readable CSV file: {exc}") from None
    columns = [re.sub(r"\s+", "_", str(c).strip().lower()) for c in raw.columns]  # "Adj Close" -> adj_close
    duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicated:
        raise ValueError(f"{name} line 1 (header): column(s) {duplicated} appear more than once")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{name} line 1 (header): missing required column(s) {missing}; found {columns}")
    raw.columns = columns
    text = raw.apply(lambda column: column.fillna("").astype(str).str.strip())
    blank = (text == "").all(axis=1)
    return text.loc[~blank], name


def _symbols(text: pd.DataFrame, problems: _Problems) -> pd.Series:
    """The ``symbol`` column as a book writes it (stripped, ASCII upper case); empty ones recorded."""
    problems.add_mask(text["symbol"] == "", text["symbol"], "symbol", "is empty")
    return text["symbol"].str.translate(_ASCII_UPPER)


def _dates(text: pd.DataFrame, problems: _Problems) -> pd.Series:
    """The ``date`` column parsed from ISO text only (``01/02/2024`` is ambiguous, so refused)."""
    iso = text["date"].str.match(_ISO_DATE)
    dates = pd.to_datetime(text["date"].where(iso), format="%Y-%m-%d", errors="coerce")
    problems.add_mask(dates.isna(), text["date"], "date", "is not an ISO date (YYYY-MM-DD)")
    return dates.astype("datetime64[ns]")


def _numbers(text: pd.DataFrame, field: str, problems: _Problems, *, required: bool, strict: bool) -> pd.Series:
    """A float column parsed from text; problems recorded for non-numbers and out-of-range values.

    strict: the value must be > 0, else >= 0. A missing optional column is all NaN.
    """
    if field not in text:
        return pd.Series(np.nan, index=text.index, dtype="float64")
    values = text[field]
    empty = values == ""
    numbers = pd.to_numeric(values.where(~empty), errors="coerce").astype("float64")
    if required:
        problems.add_mask(empty, values, field, "is empty; a number is required")
    not_number = ~empty & ~np.isfinite(numbers)
    problems.add_mask(not_number, values, field, "is not a number")
    bad = ~empty & ~not_number & ((numbers <= 0) if strict else (numbers < 0))
    problems.add_mask(bad, values, field, "must be positive" if strict else "must not be negative")
    return numbers


@lru_cache(maxsize=4)
def _read_prices(path: str, mtime_ns: int, size: int, source: str) -> pd.DataFrame:
    text, name = _read_text(path, _REQUIRED)
    problems = _Problems(name)
    symbols, dates = _symbols(text, problems), _dates(text, problems)
    columns = {"close": _numbers(text, "close", problems, required=True, strict=True)}
    for field in _OPTIONAL_PRICES:
        columns[field] = _numbers(text, field, problems, required=False, strict=True)
    volume = _numbers(text, "volume", problems, required=False, strict=False)
    problems.raise_if_any()

    frame = pd.DataFrame(
        {
            "symbol": symbols,
            "date": dates,
            **{field: columns[field] for field in ("open", "high", "low", "close", "adj_close")},
            "volume": volume.round().astype("Int64"),
            "source": source,
        },
        index=text.index,
    )
    frame = _unique_rows(frame, ["symbol", "date"], name, text["symbol"])
    return frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)[list(PRICE_COLUMNS)]


@lru_cache(maxsize=4)
def _read_profiles(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    text, name = _read_text(path, ("symbol",))
    problems = _Problems(name)
    symbols = _symbols(text, problems)
    market_cap = _numbers(text, "market_cap", problems, required=False, strict=False)
    problems.raise_if_any()
    frame = pd.DataFrame({"symbol": symbols}, index=text.index)
    for field in ("name", "sector", "industry", "currency"):
        values = text[field] if field in text else pd.Series("", index=text.index)
        frame[field] = values.astype(object).where(values != "", None)
    frame["market_cap"] = market_cap
    frame = _unique_rows(frame[list(PROFILE_COLUMNS)], ["symbol"], name, text["symbol"])
    return frame.sort_values("symbol", kind="stable").reset_index(drop=True)


@lru_cache(maxsize=4)
def _read_actions(path: str, mtime_ns: int, size: int, source: str) -> pd.DataFrame:
    text, name = _read_text(path, ("symbol", "date", "kind", "value"))
    problems = _Problems(name)
    symbols, dates = _symbols(text, problems), _dates(text, problems)
    kinds = text["kind"].str.lower()
    problems.add_mask(~kinds.isin(ACTION_KINDS), text["kind"], "kind", "is not 'split' or 'dividend'")
    value = _numbers(text, "value", problems, required=True, strict=True)
    problems.raise_if_any()
    frame = pd.DataFrame({"symbol": symbols, "date": dates, "kind": kinds, "value": value, "source": source})
    frame = _unique_rows(frame, ["symbol", "date", "kind"], name, text["symbol"])
    return frame.sort_values(["symbol", "date", "kind"], kind="stable").reset_index(drop=True)


def _unique_rows(frame: pd.DataFrame, key: list[str], name: str, written: pd.Series) -> pd.DataFrame:
    """Drop exact duplicates of a key; ValueError naming both rows and the field when they differ.

    ``written``: the symbols as in the file; two spellings of one normalized symbol are an error.
    """
    dup = frame.duplicated(key, keep=False)
    if not dup.any():
        return frame
    problems = _Problems(name)
    fields = [c for c in frame.columns if c not in key]
    for _, group in frame.loc[dup].groupby(key, sort=False):
        first = group.index[0]
        shown = ", ".join(f"{k}={_show(frame.at[first, k])}" for k in key)
        for other in group.index[1:]:
            if written.at[other] != written.at[first]:
                spellings = f"{written.at[other]!r} and {written.at[first]!r} in {_where(int(first))}"
                problems.add(
                    int(other),
                    "symbol",
                    f"{spellings} are one symbol after normalization (stripped, upper case): two rows for {shown}",
                )
                continue
            for field in fields:
                a, b = frame.at[first, field], frame.at[other, field]
                if pd.isna(a) and pd.isna(b):
                    continue
                if pd.isna(a) or pd.isna(b) or a != b:
                    problems.add(
                        int(other),
                        field,
                        f"{_show(b)} differs from {_show(a)} in {_where(int(first))}, the same {shown}",
                    )
                    break
    problems.raise_if_any()
    return frame.drop_duplicates(key, keep="first")


def _show(value) -> str:
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, (float, np.floating, np.integer)):
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    return repr(value)
