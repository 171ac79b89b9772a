"""The planner's entry point: read the state once, decide with the pure `plan`.

`factor-platform materialize`, the nightly schedule and the portfolio sensor all ask here, so they
agree on what "missing" means (`planning.plan`). Whoever executes a plan registers its new partitions
(`Plan.new_symbols`, `Plan.new_portfolios`) first, with `register`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from factor_platform.planning.plan import Plan, PlannedRun, PlanRequest, plan
from factor_platform.planning.state import all_etfs, materialized, read_state
from factor_platform.storage import Database

__all__ = ["Plan", "PlanRequest", "PlannedRun", "all_etfs", "materialized", "plan_materialization", "register"]


def register(instance: dg.DagsterInstance, dimension: str, keys: Sequence[str]) -> list[str]:
    """Add partitions not yet known, in the given order (keeps a batch contiguous); return the new ones."""
    known = set(instance.get_dynamic_partitions(dimension))
    new = list(dict.fromkeys(k for k in keys if k not in known))
    if new:
        instance.add_dynamic_partitions(dimension, new)
    return new


def register_plan(instance: dg.DagsterInstance, planned: Plan) -> None:
    """The partitions a plan's runs name, added to Dagster before they run."""
    register(instance, "symbol", planned.new_symbols)
    register(instance, "portfolio", planned.new_portfolios)


def plan_materialization(
    instance: dg.DagsterInstance,
    db: Database,
    *,
    start: dt.date,
    end: dt.date,
    portfolios: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    calendar: str = "XNYS",
    first_session: dt.date | None = None,
    partitions_from: dt.date | None = None,
    universe: Sequence[str] = (),
    refresh: bool = False,
) -> Plan:
    """Every missing partition of every layer for sessions in [start, end] (`PlanRequest`, `plan`)."""
    request = PlanRequest(
        start=start,
        end=end,
        portfolios=None if portfolios is None else tuple(portfolios),
        symbols=None if symbols is None else tuple(symbols),
        calendar=calendar,
        first_session=first_session,
        partitions_from=partitions_from,
        universe=tuple(universe),
        refresh=refresh,
    )
    return plan(read_state(instance, db, request), request)
