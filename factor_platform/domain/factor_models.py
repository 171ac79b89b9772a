"""Factor definitions, loaded from TOML data (factor_platform/data/factors.toml by default).

Set FACTOR_PLATFORM_FACTORS to a TOML file of the same shape to use other ETFs, windows or factors.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from factor_platform import settings

DEFAULT_FACTORS_FILE = Path(__file__).parents[1] / "data" / "factors.toml"
METHODS = ("ols", "ridge", "spread")
# Sessions of prices a symbol-layer run loads before its first date: the longest window
# (180 returns) and the 252-session metrics fit with room to spare for missing days.
LOOKBACK_SESSIONS = 300


@dataclass(frozen=True)
class Regression:
    """One fit: `factors` maps each factor name to the ETF ticker(s) it regresses on.

    ols: (x,) per factor, fitted alone; spread: (long, short) per factor, fitted alone on the
    difference of returns; ridge: (x,) per factor, all fitted jointly.
    """

    method: str
    factors: dict[str, tuple[str, ...]]
    window: int
    min_obs: int
    alpha: float = 1.0
    tickers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"factor method {self.method!r} is not one of {METHODS}")
        if not 2 < self.min_obs <= self.window:
            raise ValueError(f"min_obs={self.min_obs} must be in (2, window={self.window}]")
        arity = 2 if self.method == "spread" else 1
        for name, tickers in self.factors.items():
            if len(tickers) != arity:
                raise ValueError(f"factor {name!r} ({self.method}) needs {arity} ticker(s), got {list(tickers)}")
        seen: list[str] = []
        for tickers in self.factors.values():
            seen.extend(t for t in tickers if t not in seen)
        object.__setattr__(self, "tickers", tuple(seen))


def load_regressions(path: str | Path | None = None) -> list[Regression]:
    path = Path(path or settings.factors_file() or DEFAULT_FACTORS_FILE)
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    regressions = [
        Regression(
            method=table["method"],
            factors={name: tuple(tickers) for name, tickers in table["factors"].items()},
            window=int(table["window"]),
            min_obs=int(table["min_obs"]),
            alpha=float(table.get("alpha", 1.0)),
        )
        for table in data.get("regression", [])
    ]
    names = [name for reg in regressions for name in reg.factors]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{path}: factor names defined twice: {duplicated}")
    return regressions


def factor_names(regressions: list[Regression]) -> list[str]:
    return [name for reg in regressions for name in reg.factors]


def factor_tickers(regressions: list[Regression]) -> list[str]:
    out: list[str] = []
    for reg in regressions:
        out.extend(t for t in reg.tickers if t not in out)
    return out
