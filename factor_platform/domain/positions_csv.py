"""Parse and validate a positions CSV (contract §2) into a frame shaped like the `positions` table.

Every row is validated before anything is returned: either all rows are good and the result is a
:class:`pandas.DataFrame` with exactly :data:`POSITION_COLUMNS`, or :class:`PositionsCsvError` is
raised listing every problem found (row, field, reason) and nothing is returned.

Row numbers are the ones a spreadsheet shows: the header is row 1, the first data row is row 2
(a row is a CSV record, so a quoted field spanning two lines is still one row). Row 0 stands for
the file as a whole (unreadable, too large, too many rows).

Fields are read as text with the ``csv`` module (no pandas type inference) and each is checked:

- columns: ``symbol, quantity, position_type, investment_class, entry_price, entry_date`` required;
  ``exit_date, exit_price, underlying, strike, expiration, option_type, manual_market_value, sector``
  optional. Header names are matched case-insensitively, ignoring surrounding spaces. An unknown
  column is an error (a typo such as ``qty`` would otherwise silently drop data), so is a duplicate.
- values: surrounding whitespace is ignored; an empty value is "absent".
- numbers: plain decimal notation (``1234.5``, ``-3``, ``1e6``); no thousands separators, currency
  signs, hex, ``nan`` or ``inf``; magnitude at most 1e15.
- dates: ISO ``YYYY-MM-DD`` only, and a real calendar date.
- ``symbol`` and ``underlying``: :func:`factor_platform.domain.symbols.validate_symbol` (stored upper-case).
- ``quantity`` > 0 (the side comes from ``position_type``).
- ``position_type`` ∈ LONG, SHORT, LC, LP, SC, SP and ``investment_class`` ∈ PUBLIC, OPTIONS, PRIVATE,
  case-insensitive, stored upper-case. LONG/SHORT go with PUBLIC or PRIVATE; LC/LP/SC/SP only with OPTIONS.
- ``entry_price`` ≥ 0, and > 0 for PUBLIC; ``exit_price`` ≥ 0.
- ``entry_date`` between 1990-01-01 and today; it need not be a session (the position counts
  from the next session). ``exit_date`` ≥ ``entry_date``, not after today; ``exit_date`` and
  ``exit_price`` come together.
- OPTIONS: ``underlying`` (a valid symbol, different from ``symbol``), ``strike`` > 0 and
  ``expiration`` (not before ``entry_date``) are required. ``option_type`` (CALL or PUT), when given,
  must agree with ``position_type`` (LC/SC = CALL, LP/SP = PUT); when absent it is derived from it.
  When ``symbol`` is an OCC option symbol (``AAPL250117C00150000``), its type, expiration and strike
  must agree with the row. Other rows must leave these four fields empty.
- PRIVATE: ``manual_market_value`` > 0 is required; other rows must leave it empty.
- ``sector``: free text, at most 64 printable characters.
- Two rows with the same symbol and entry date are two lots, both kept.
- Fully empty rows (e.g. trailing ``,,,,,`` lines) are skipped. A file without any position is an error.

``position_id`` is ``f"{portfolio_id}:{n}"`` with ``n`` the 1-based data-row ordinal (spreadsheet
row − 1, skipped empty rows included), so re-importing the same file gives the same ids and
position ``P:n`` is on spreadsheet row ``n + 1``.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from factor_platform.domain.positions import (
    INVESTMENT_CLASSES,
    OPTION_POSITION_TYPES,
    OPTION_TYPES,
    OPTIONAL_COLUMNS,
    POSITION_COLUMNS,
    POSITION_TYPES,
    REQUIRED_COLUMNS,
)
from factor_platform.domain.symbols import (
    InvalidSymbolError,
    parse_occ_symbol,
    validate_portfolio_id,
    validate_symbol,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ROWS",
    "PositionsCsvError",
    "Problem",
    "parse_positions_csv",
]

_POSITION_TYPE_NAMES = {
    "LONG": "long",
    "SHORT": "short",
    "LC": "long call",
    "LP": "long put",
    "SC": "short call",
    "SP": "short put",
}

DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
EARLIEST_ENTRY_DATE = dt.date(1990, 1, 1)
MAX_ABS_NUMBER = 1e15
MAX_SECTOR_LENGTH = 64
# The error message lists this many problems; `.problems` always holds all of them.
MAX_LISTED_PROBLEMS = 100

_KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
_OPTION_ONLY_FIELDS = ("underlying", "strike", "expiration", "option_type")
# Names other tools use, only to suggest the right column in the message (never accepted silently).
_COLUMN_HINTS = {
    "ticker": "symbol",
    "qty": "quantity",
    "shares": "quantity",
    "units": "quantity",
    "side": "position_type",
    "type": "position_type",
    "class": "investment_class",
    "asset_class": "investment_class",
    "price": "entry_price",
    "cost": "entry_price",
    "date": "entry_date",
    "trade_date": "entry_date",
    "expiry": "expiration",
    "market_value": "manual_market_value",
    "mv": "manual_market_value",
}
_NUMBER = re.compile(r"\A[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_ISO_DATE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
# Marks a field that is present but bad (its problem is already recorded); None means absent.
_INVALID = object()


@dataclass(frozen=True)
class Problem:
    """One problem in a positions CSV.

    ``row``: spreadsheet row number (header = 1, first data row = 2), 0 for the whole file.
    ``field``: the column name, or "" when the problem is not about one field.
    """

    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = "file" if self.row == 0 else f"row {self.row}"
        if self.field:
            where += f", field {self.field}"
        return f"{where}: {self.reason}"


class PositionsCsvError(ValueError):
    """A positions CSV that cannot be imported; ``.problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem], *, source: str | None = None):
        self.problems: list[Problem] = list(problems)
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.problems)
        name = f"positions CSV {self.source}" if self.source else "positions CSV"
        lines = [f"{name}: {n} problem{'s' if n != 1 else ''}, nothing was read"]
        lines += [f"  {p}" for p in self.problems[:MAX_LISTED_PROBLEMS]]
        if n > MAX_LISTED_PROBLEMS:
            lines.append(f"  ... and {n - MAX_LISTED_PROBLEMS} more")
        return "\n".join(lines)


def parse_positions_csv(
    source: str | bytes | os.PathLike,
    *,
    portfolio_id: str,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    today: dt.date | None = None,
) -> pd.DataFrame:
    """Validate every row of a positions CSV and return the positions, or raise.

    ``source``: a path (``os.PathLike``, or a ``str`` without a line break), CSV text (a ``str``
    with a line break) or the file's bytes. Bytes and files are decoded as UTF-8 (a BOM is
    tolerated). ``portfolio_id`` is validated with ``validate_portfolio_id``
    (``InvalidPortfolioIdError`` when bad). ``max_bytes`` / ``max_rows`` (data rows) bound the
    work: a larger file is refused before it is read, and reading stops at the first row over
    the limit. ``today`` (default: the local date) bounds entry and exit dates.

    Returns a frame with exactly :data:`POSITION_COLUMNS`, one row per data row in file order:
    strings (``object``; None when absent), ``quantity``/prices/``strike``/``manual_market_value``
    float64 (NaN when absent), ``entry_date``/``exit_date``/``expiration`` ``datetime64[ns]``
    (NaT when absent). Raises :class:`PositionsCsvError` listing every problem otherwise.
    """
    portfolio_id = validate_portfolio_id(portfolio_id)
    today = dt.date.today() if today is None else today
    text, label = _read_text(source, max_bytes=max_bytes)
    records = _records(text, max_rows=max_rows, label=label)
    problems: list[Problem] = []

    header = next(records, None)
    if header is None or not any(field.strip() for field in header[1]):
        expected = ",".join(REQUIRED_COLUMNS)
        raise PositionsCsvError(
            [Problem(1, "", f"the header row is missing or empty; expected at least: {expected}")], source=label
        )
    columns, header_problems = _header(header[1])
    if header_problems:
        raise PositionsCsvError(header_problems, source=label)

    out: dict[str, list] = {name: [] for name in POSITION_COLUMNS}
    for row, record in records:
        if not any(field.strip() for field in record):
            continue  # an empty row, e.g. a trailing ",,,,,"
        if len(record) != len(columns):
            reason = f"has {len(record)} fields but the header has {len(columns)}; nothing in this row was checked"
            problems.append(Problem(row, "", reason))
            continue
        values: dict[str, str | None] = {}
        for index, (name, raw) in enumerate(zip(columns, record)):
            value = raw.strip()
            if name is None:
                if value:
                    reason = f"has a value ({_show(value)}) but the column has no header name"
                    problems.append(Problem(row, f"column {index + 1}", reason))
                continue
            values[name] = value or None
        position, row_problems = _validate_row(row, values, today=today)
        if row_problems:
            problems.extend(row_problems)
            continue
        if not problems:  # once anything is wrong only problems are collected
            position["position_id"] = f"{portfolio_id}:{row - 1}"
            position["portfolio_id"] = portfolio_id
            for name in POSITION_COLUMNS:
                out[name].append(position[name])

    if problems:
        raise PositionsCsvError(problems, source=label)
    if not out["position_id"]:
        raise PositionsCsvError([Problem(1, "", "no positions: the file has a header but no data rows")], source=label)
    return _frame(out)


# ----------------------------------------------------------------------------- reading


def _read_text(source: str | bytes | os.PathLike, *, max_bytes: int) -> tuple[str, str | None]:
    """(text, label for messages). File-level problems raise PositionsCsvError (row 0)."""
    label: str | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, str) and ("\n" in source or "\r" in source):
        size = len(source.encode("utf-8", errors="surrogatepass"))
        if size > max_bytes:
            raise PositionsCsvError([_too_large(size, max_bytes)])
        return source.removeprefix("\ufeff"), None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise PositionsCsvError([_too_large(size, max_bytes)], source=label)
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)  # the file may have grown since stat()
        except OSError as exc:
            raise PositionsCsvError([Problem(0, "", f"cannot be read: {exc.strerror or exc}")], source=label) from exc
    else:
        raise TypeError(f"source must be a path, CSV text or bytes, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise PositionsCsvError([_too_large(len(data), max_bytes)], source=label)
    for bom, encoding in _OTHER_BOMS.items():
        if data.startswith(bom):
            raise PositionsCsvError(
                [Problem(0, "", f"is {encoding} text; save it as CSV UTF-8 (comma delimited)")], source=label
            )
    # Undecodable bytes become lone surrogates, reported per field with their row (see _validate_row).
    return data.removeprefix(_UTF8_BOM).decode("utf-8", errors="surrogateescape"), label


def _too_large(size: int, max_bytes: int) -> Problem:
    return Problem(0, "", f"is {size:,} bytes, more than the limit of {max_bytes:,} bytes")


def _records(text: str, *, max_rows: int, label: str | None):
    """Yield (spreadsheet row number, fields) of every CSV record, header = row 1."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    row = 0
    while True:
        row += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise PositionsCsvError(
                [Problem(row, "", f"is not valid CSV ({exc}); nothing after it was checked")], source=label
            ) from exc
        if row - 1 > max_rows:
            raise PositionsCsvError(
                [Problem(0, "", f"has more than {max_rows:,} data rows (the limit); split it")], source=label
            )
        yield row, record


def _header(fields: list[str]) -> tuple[list[str | None], list[Problem]]:
    """Column name per position (None for an unnamed column) and the header's problems (row 1)."""
    problems: list[Problem] = []
    if len(fields) == 1:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs")):
            if delimiter in fields[0]:
                reason = f"the columns are separated by {name}; use commas (CSV UTF-8, comma delimited)"
                return [], [Problem(1, "", reason)]
    columns: list[str | None] = []
    seen: set[str] = set()
    for raw in fields:
        name = raw.strip().lower()
        if not name:
            columns.append(None)
            continue
        columns.append(name)
        if _SURROGATE.search(name):
            problems.append(Problem(1, _show(name)[1:-1], "column name is not valid UTF-8 text"))
        elif name in seen:
            problems.append(Problem(1, name, "column appears more than once"))
        elif name not in _KNOWN_COLUMNS:
            hint = _COLUMN_HINTS.get(name) or next(iter(difflib.get_close_matches(name, _KNOWN_COLUMNS, n=1)), None)
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            problems.append(
                Problem(
                    1,
                    _show(name)[1:-1],
                    f"unknown column{suggestion}; the columns are {', '.join(_KNOWN_COLUMNS)}",
                )
            )
        seen.add(name)
    for name in REQUIRED_COLUMNS:
        if name not in seen:
            problems.append(Problem(1, name, "required column is missing"))
    return columns, problems


# ----------------------------------------------------------------------------- one row


def _validate_row(row: int, values: dict[str, str | None], *, today: dt.date) -> tuple[dict, list[Problem]]:
    """The position of one data row (POSITION_COLUMNS except the ids) and its problems."""
    problems: list[Problem] = []

    def bad(field: str, reason: str) -> None:
        problems.append(Problem(row, field, reason))

    for name, value in values.items():
        if value is not None and _SURROGATE.search(value):
            bad(name, "is not valid UTF-8 text; save the file as CSV UTF-8")
            values[name] = _INVALID  # type: ignore[assignment]

    def present(name: str) -> bool:
        return values.get(name) is not None

    symbol = _symbol(values, "symbol", bad, required=True)
    quantity = _number(values, "quantity", bad, required=True, positive=True)
    position_type = _choice(values, "position_type", POSITION_TYPES, bad, required=True)
    investment_class = _choice(values, "investment_class", INVESTMENT_CLASSES, bad, required=True)
    entry_price = _number(values, "entry_price", bad, required=True)
    entry_date = _date(values, "entry_date", bad, required=True)
    exit_date = _date(values, "exit_date", bad)
    exit_price = _number(values, "exit_price", bad)
    underlying = _symbol(values, "underlying", bad)
    strike = _number(values, "strike", bad, positive=True)
    expiration = _date(values, "expiration", bad)
    option_type = _choice(values, "option_type", OPTION_TYPES, bad)
    manual_market_value = _number(values, "manual_market_value", bad, positive=True)
    sector = _sector(values, bad)

    def ok(value) -> bool:
        return value is not None and value is not _INVALID

    # Dates.
    if ok(entry_date):
        if entry_date < EARLIEST_ENTRY_DATE:
            bad("entry_date", f"is before {EARLIEST_ENTRY_DATE.isoformat()}, got {entry_date.isoformat()}")
        elif entry_date > today:
            bad("entry_date", f"is in the future (today is {today.isoformat()}), got {entry_date.isoformat()}")
    if ok(exit_date):
        if exit_date > today:
            bad("exit_date", f"is in the future (today is {today.isoformat()}), got {exit_date.isoformat()}")
        elif ok(entry_date) and exit_date < entry_date:
            bad("exit_date", f"is before entry_date {entry_date.isoformat()}, got {exit_date.isoformat()}")
    if present("exit_date") and not present("exit_price"):
        bad("exit_price", "is required when exit_date is given")
    if present("exit_price") and not present("exit_date"):
        bad("exit_date", "is required when exit_price is given")

    # Position type and investment class.
    if ok(position_type) and ok(investment_class):
        if investment_class == "OPTIONS" and position_type not in OPTION_POSITION_TYPES:
            bad("position_type", f"{position_type} does not go with OPTIONS; option rows use LC, LP, SC or SP")
        elif investment_class != "OPTIONS" and position_type in OPTION_POSITION_TYPES:
            bad(
                "position_type",
                f"{position_type} ({_POSITION_TYPE_NAMES[position_type]}) needs investment_class OPTIONS, "
                f"got {investment_class}",
            )
    if ok(investment_class) and investment_class == "PUBLIC" and ok(entry_price) and entry_price <= 0:
        bad("entry_price", f"must be positive for PUBLIC rows, got {_show(values['entry_price'])}")

    # Options.
    if ok(investment_class) and investment_class == "OPTIONS":
        for name in ("underlying", "strike", "expiration"):
            if not present(name):
                bad(name, "is required for OPTIONS rows")
        if ok(symbol) and ok(underlying) and symbol == underlying:
            bad("symbol", f"must be the option contract's own symbol, not its underlying {underlying}")
        if ok(expiration) and ok(entry_date) and expiration < entry_date:
            bad("expiration", f"is before entry_date {entry_date.isoformat()}, got {expiration.isoformat()}")
        implied = OPTION_POSITION_TYPES.get(position_type) if ok(position_type) else None
        if implied is not None:
            if ok(option_type) and option_type != implied:
                bad("option_type", f"{option_type} disagrees with position_type {position_type} ({implied})")
            elif option_type is None:
                option_type = implied
        occ = parse_occ_symbol(symbol) if ok(symbol) else None
        if occ is not None:
            if ok(option_type) and occ.option_type != option_type:
                bad("symbol", f"{symbol} is a {occ.option_type} but the row is a {option_type}")
            if ok(expiration) and occ.expiration != expiration:
                bad("symbol", f"{symbol} expires {occ.expiration.isoformat()}, not on {expiration.isoformat()}")
            if ok(strike) and not math.isclose(occ.strike, strike, rel_tol=1e-9, abs_tol=5e-4):
                bad("symbol", f"{symbol} has strike {occ.strike:g}, not the row's strike {strike:g}")
    elif ok(investment_class):
        for name in _OPTION_ONLY_FIELDS:
            if present(name):
                bad(name, f"is only for OPTIONS rows, this row is {investment_class}")

    # Private.
    if ok(investment_class) and investment_class == "PRIVATE":
        if not present("manual_market_value"):
            bad("manual_market_value", "is required for PRIVATE rows")
    elif ok(investment_class) and present("manual_market_value"):
        bad("manual_market_value", f"is only for PRIVATE rows, this row is {investment_class}")

    position = {
        "symbol": symbol,
        "position_type": position_type,
        "investment_class": investment_class,
        "quantity": quantity,
        "entry_price": entry_price,
        "entry_date": entry_date,
        "exit_date": exit_date,
        "exit_price": exit_price,
        "underlying": underlying,
        "strike": strike,
        "expiration": expiration,
        "option_type": option_type,
        "manual_market_value": manual_market_value,
        "sector": sector,
    }
    return position, problems


# ----------------------------------------------------------------------------- fields
# Each returns the parsed value, None when the field is absent (empty or not a column), or
# _INVALID after recording a problem through `bad`.


def _show(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _raw(values, name, bad, required):
    value = values.get(name)
    if value is None and required:
        bad(name, "is required")
        return _INVALID
    return value


def _number(values, name, bad, *, required=False, positive=False):
    value = _raw(values, name, bad, required)
    if value is None or value is _INVALID:
        return value
    sign = "a positive" if positive else "a non-negative"
    if not _NUMBER.match(value):
        bad(name, f"must be {sign} number in plain notation like 1234.5 (no thousands separators), got {_show(value)}")
        return _INVALID
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_ABS_NUMBER:
        bad(name, f"must be at most {MAX_ABS_NUMBER:g} in size, got {_show(value)}")
        return _INVALID
    if number < 0 or (positive and number == 0):
        bad(name, f"must be {sign} number, got {_show(value)}")
        return _INVALID
    return number + 0.0  # -0.0 -> 0.0


def _date(values, name, bad, *, required=False):
    value = _raw(values, name, bad, required)
    if value is None or value is _INVALID:
        return value
    if not _ISO_DATE.match(value):
        bad(name, f"must be an ISO date YYYY-MM-DD, got {_show(value)}")
        return _INVALID
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        bad(name, f"is not a calendar date, got {_show(value)}")
        return _INVALID


def _choice(values, name, allowed, bad, *, required=False):
    value = _raw(values, name, bad, required)
    if value is None or value is _INVALID:
        return value
    upper = value.upper()
    if not value.isascii() or upper not in allowed:
        bad(name, f"must be one of {', '.join(allowed)}, got {_show(value)}")
        return _INVALID
    return upper


def _symbol(values, name, bad, *, required=False):
    value = _raw(values, name, bad, required)
    if value is None or value is _INVALID:
        return value
    try:
        return validate_symbol(value)
    except InvalidSymbolError as exc:
        bad(name, str(exc))
        return _INVALID


def _sector(values, bad):
    value = values.get("sector")
    if value is None or value is _INVALID:
        return value
    if len(value) > MAX_SECTOR_LENGTH:
        bad("sector", f"is longer than {MAX_SECTOR_LENGTH} characters, got {_show(value)}")
        return _INVALID
    if not value.isprintable():
        bad("sector", f"contains control characters, got {_show(value)}")
        return _INVALID
    return value


# ----------------------------------------------------------------------------- output


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    data = {}
    for name in POSITION_COLUMNS:
        values = columns[name]
        if name in ("entry_date", "exit_date", "expiration"):
            data[name] = pd.Series([pd.NaT if v is None else pd.Timestamp(v) for v in values], dtype="datetime64[ns]")
        elif name in ("quantity", "entry_price", "exit_price", "strike", "manual_market_value"):
            data[name] = pd.Series([math.nan if v is None else v for v in values], dtype="float64")
        else:
            data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data, columns=list(POSITION_COLUMNS))
