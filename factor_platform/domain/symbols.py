"""The one safe pattern for symbols and portfolio ids.

Symbols and portfolio ids become Dagster partition keys (multi-partition keys are joined with
``|``; Dagster refuses ``|``, ``,``, ``[``, ``]`` and ``...`` in them) and SQL parameters, and
they are shown in the UI and in file names. Everything that enters the platform from a user
or a vendor goes through :func:`validate_symbol` / :func:`validate_portfolio_id` first.

Symbols: leading/trailing whitespace is stripped and ASCII letters are upper-cased, then the
result must match :data:`SYMBOL_PATTERN` — ASCII letters, digits and ``. - = _ ^``, starting
with a letter or digit (or a single ``^`` for an index, e.g. ``^GSPC``), at most 32 characters,
no two consecutive dots. Examples: ``AAPL``, ``BRK-B``, ``BRK.B``, ``^GSPC``, ``EURUSD=X``,
``ES=F``, ``AAPL250117C00150000`` (an OCC option symbol). Non-ASCII input is refused, never
transliterated (``"ß".upper() == "SS"`` would otherwise turn one symbol into another).

Portfolio ids keep their case: ASCII letters, digits and ``_ . -``, starting with a letter or
digit, at most 64 characters, no two consecutive dots.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = [
    "MAX_PORTFOLIO_ID_LENGTH",
    "MAX_SYMBOL_LENGTH",
    "OCC_OPTION_PATTERN",
    "PORTFOLIO_ID_PATTERN",
    "SYMBOL_PATTERN",
    "InvalidPortfolioIdError",
    "InvalidSymbolError",
    "OccOption",
    "is_option_symbol",
    "parse_occ_symbol",
    "validate_portfolio_id",
    "validate_symbol",
]

MAX_SYMBOL_LENGTH = 32
MAX_PORTFOLIO_ID_LENGTH = 64

# \A…\Z, not ^…$: "$" also matches before a trailing newline.
SYMBOL_PATTERN = re.compile(r"\A(?=.{1,32}\Z)\^?[A-Z0-9][A-Z0-9.=_^-]*\Z")
PORTFOLIO_ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")

# OCC / Yahoo option symbology: root (1-6 chars) + YYMMDD + C|P + strike × 1000 on 8 digits,
# e.g. AAPL250117C00150000 = AAPL call, expiring 2025-01-17, strike 150.
OCC_OPTION_PATTERN = re.compile(
    r"\A(?P<root>[A-Z][A-Z0-9]{0,5})(?P<expiration>[0-9]{6})(?P<option_type>[CP])(?P<strike>[0-9]{8})\Z"
)

_SYMBOL_CHARACTERS = "ASCII letters, digits and . - = _ ^"


def _show(raw: object, limit: int = 40) -> str:
    """repr() of the offending input, cut short so that messages stay readable."""
    if isinstance(raw, str) and len(raw) > limit:
        raw = raw[: limit - 3] + "..."
    return repr(raw)


class InvalidSymbolError(ValueError):
    """A symbol that cannot be used as a partition key / SQL parameter; the message says why."""


class InvalidPortfolioIdError(InvalidSymbolError):
    """A portfolio id that cannot be used as a partition key; the message says why.

    A subclass of InvalidSymbolError so that one ``except InvalidSymbolError`` covers every
    identifier that becomes a partition key.
    """


def validate_symbol(raw: object) -> str:
    """Return the normalized symbol (stripped, upper-case) or raise :class:`InvalidSymbolError`.

    The result always matches :data:`SYMBOL_PATTERN`.
    """
    if not isinstance(raw, str):
        raise InvalidSymbolError(f"symbol {_show(raw)} must be a string, got {type(raw).__name__}")
    value = raw.strip()
    if not value:
        raise InvalidSymbolError(f"symbol {_show(raw)} is empty")
    if not value.isascii():
        raise InvalidSymbolError(f"symbol {_show(raw)} contains non-ASCII characters; allowed are {_SYMBOL_CHARACTERS}")
    value = value.upper()
    if len(value) > MAX_SYMBOL_LENGTH:
        raise InvalidSymbolError(f"symbol {_show(raw)} is longer than {MAX_SYMBOL_LENGTH} characters")
    if ".." in value:
        raise InvalidSymbolError(f"symbol {_show(raw)} contains consecutive dots")
    if not SYMBOL_PATTERN.match(value):
        bad = sorted({c for c in value if not (c.isalnum() or c in ".=_^-")})
        if bad:
            why = f"contains {', '.join(repr(c) for c in bad)}; allowed are {_SYMBOL_CHARACTERS}"
        else:
            why = "must start with a letter or digit (or a single '^' followed by one)"
        raise InvalidSymbolError(f"symbol {_show(raw)} {why}")
    return value


def validate_portfolio_id(raw: object) -> str:
    """Return the portfolio id (stripped, case kept) or raise :class:`InvalidPortfolioIdError`.

    The result always matches :data:`PORTFOLIO_ID_PATTERN`.
    """
    if not isinstance(raw, str):
        raise InvalidPortfolioIdError(f"portfolio id {_show(raw)} must be a string, got {type(raw).__name__}")
    value = raw.strip()
    if not value:
        raise InvalidPortfolioIdError(f"portfolio id {_show(raw)} is empty")
    if not value.isascii():
        raise InvalidPortfolioIdError(
            f"portfolio id {_show(raw)} contains non-ASCII characters; allowed are ASCII letters, digits and _ . -"
        )
    if len(value) > MAX_PORTFOLIO_ID_LENGTH:
        raise InvalidPortfolioIdError(f"portfolio id {_show(raw)} is longer than {MAX_PORTFOLIO_ID_LENGTH} characters")
    if ".." in value:
        raise InvalidPortfolioIdError(f"portfolio id {_show(raw)} contains consecutive dots")
    if not PORTFOLIO_ID_PATTERN.match(value):
        bad = sorted({c for c in value if not (c.isalnum() or c in "_.-")})
        if bad:
            why = f"contains {', '.join(repr(c) for c in bad)}; allowed are ASCII letters, digits and _ . -"
        else:
            why = "must start with a letter or digit"
        raise InvalidPortfolioIdError(f"portfolio id {_show(raw)} {why}")
    return value


@dataclass(frozen=True)
class OccOption:
    """The parts of an OCC option symbol."""

    root: str
    expiration: dt.date
    option_type: str  # "CALL" | "PUT"
    strike: float


def parse_occ_symbol(symbol: str) -> OccOption | None:
    """The parts of an OCC option symbol (e.g. ``AAPL250117C00150000``), or None if it is not one.

    ``symbol`` is taken as given (validate it first); a six-digit date that is not a real
    calendar date (``250230``) means "not an OCC symbol".
    """
    match = OCC_OPTION_PATTERN.match(symbol)
    if match is None:
        return None
    yymmdd = match["expiration"]
    try:
        expiration = dt.date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError:
        return None
    return OccOption(
        root=match["root"],
        expiration=expiration,
        option_type="CALL" if match["option_type"] == "C" else "PUT",
        strike=int(match["strike"]) / 1000.0,
    )


def is_option_symbol(symbol: str) -> bool:
    """True when ``symbol`` is an OCC option symbol with a real expiration date."""
    return isinstance(symbol, str) and parse_occ_symbol(symbol) is not None
