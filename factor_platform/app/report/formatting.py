"""How the report writes numbers, for the HTML tables and the chart axes alike; a dash stands for missing."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

DASH = "\u2014"


def finite(x: Any) -> bool:
    """True for a real, finite number; None, NA, NaN, inf and non-numbers are missing."""
    try:
        return x is not None and x is not pd.NA and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def money(x: Any, *, signed: bool = False) -> str:
    """1,234,567 (or +1,234,567 with `signed`); a dash for missing."""
    if not finite(x):
        return DASH
    text = f"{float(x):+,.0f}" if signed else f"{float(x):,.0f}"
    return "0" if text in ("-0", "+0") else text


def per_share(x: Any) -> str:
    """$0.52, $0.2425: cash per share keeps its cents (and up to 4 decimals), unlike `money`."""
    if not finite(x):
        return DASH
    cents = f"{float(x):,.4f}".rstrip("0")
    return "$" + (cents + "0" * (2 - len(cents.split(".")[1])))


def pct(x: Any, *, signed: bool = False, digits: int = 2) -> str:
    if not finite(x):
        return DASH
    text = f"{float(x):+.{digits}%}" if signed else f"{float(x):.{digits}%}"
    return text.replace("-0.00%", "0.00%").replace("+0.00%", "0.00%")


def number(x: Any, *, digits: int = 2, signed: bool = False) -> str:
    if not finite(x):
        return DASH
    return f"{float(x):+,.{digits}f}" if signed else f"{float(x):,.{digits}f}"


def quantity(x: Any) -> str:
    if not finite(x):
        return DASH
    return f"{float(x):,.0f}" if float(x).is_integer() else f"{float(x):,.4f}".rstrip("0")


def compact_money(x: float) -> str:
    """Axis ticks: +1.2M, -250k, 0."""
    if x == 0:
        return "0"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:+.{0 if abs(x) % scale == 0 else 1}f}{suffix}"
    return f"{x:+,.0f}"
