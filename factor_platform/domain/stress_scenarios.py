"""Stress scenarios, loaded from TOML data (factor_platform/data/stress_scenarios.toml by default).

Set FACTOR_PLATFORM_STRESS_SCENARIOS to a TOML file of the same shape to use another set (it replaces
the default file). Shape::

    [[scenario]]
    name = "Equity -20%"
    description = "Bear-market drop in US equities: SPY -20%."
    shocks = { market_beta = -0.20 }

A shock is the scenario's return of the factor's series as a fraction (|shock| <= 1); factor names are
those of the factor definitions (factor_models).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from factor_platform import settings
from factor_platform.domain.factor_models import factor_names, load_regressions

DEFAULT_STRESS_FILE = Path(__file__).parents[1] / "data" / "stress_scenarios.toml"
STRESS_FILE_ENV = "FACTOR_PLATFORM_STRESS_SCENARIOS"
SCENARIO_KEYS = frozenset({"name", "description", "shocks"})


@dataclass(frozen=True)
class StressScenario:
    """One named set of factor shocks (factor -> return as a fraction)."""

    name: str
    description: str
    shocks: Mapping[str, float]


def load_stress_scenarios(
    path: str | Path | None = None, *, factors: Iterable[str] | None = None
) -> list[StressScenario]:
    """The scenarios of ``path`` (default: $FACTOR_PLATFORM_STRESS_SCENARIOS, else the packaged file).

    ``factors``: the factor names a shock may use (default: those of ``load_regressions()``).
    Raises ValueError naming the file and scenario on an unknown key, a missing name/description/shocks,
    a shock that is not a finite number in [-1, 1], an unknown factor or a duplicated name.
    """
    path = Path(path or settings.stress_scenarios_file() or DEFAULT_STRESS_FILE)
    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    known = set(factor_names(load_regressions()) if factors is None else factors)

    extra = set(data) - {"scenario"}
    if extra:
        raise ValueError(f"{path}: unknown top-level keys {sorted(extra)} (expected [[scenario]] tables)")
    tables = data.get("scenario", [])
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{path}: no [[scenario]] tables")

    scenarios: list[StressScenario] = []
    for number, table in enumerate(tables, start=1):
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{path}: scenario #{number} needs a non-empty string `name`")
        where = f"{path}: scenario {name!r}"
        unknown = set(table) - SCENARIO_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(SCENARIO_KEYS)})")
        description = table.get("description")
        if not isinstance(description, str) or not description.strip() or "\n" in description:
            raise ValueError(f"{where}: needs a one-line string `description`")
        shocks = table.get("shocks")
        if not isinstance(shocks, dict) or not shocks:
            raise ValueError(f"{where}: needs a non-empty `shocks` table (factor = return)")
        clean: dict[str, float] = {}
        for factor, shock in shocks.items():
            if factor not in known:
                raise ValueError(f"{where}: unknown factor {factor!r} (known: {sorted(known)})")
            if isinstance(shock, bool) or not isinstance(shock, (int, float)) or not math.isfinite(shock):
                raise ValueError(f"{where}: shock of {factor!r} must be a finite number, got {shock!r}")
            if abs(shock) > 1:
                raise ValueError(f"{where}: shock of {factor!r} = {shock} is not a fraction (-0.20 means -20%)")
            clean[factor] = float(shock)
        if any(s.name == name for s in scenarios):
            raise ValueError(f"{where}: name defined twice")
        scenarios.append(StressScenario(name=name, description=description, shocks=MappingProxyType(clean)))
    return scenarios
