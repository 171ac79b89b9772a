"""Freshness of each layer in exchange sessions, and the failures still open."""

from __future__ import annotations

import pandas as pd

from factor_platform.domain import sessions
from factor_platform.layers.invalidation import stale_summary
from factor_platform.layers.names import PORTFOLIO_ASSETS, SYMBOL_DAY_ASSETS
from factor_platform.settings import Settings
from factor_platform.storage import Database

LAYERS = SYMBOL_DAY_ASSETS + PORTFOLIO_ASSETS  # one table per asset


def layer_status(db: Database, *, settings: Settings) -> dict:
    latest = sessions.latest_closed_session(name=settings.calendar)
    layers = []
    for table in LAYERS:
        newest = db.max_date(table)
        layers.append(
            {
                "table": table,
                "latest_date": newest,
                "sessions_behind": sessions.sessions_behind(newest, latest, settings.calendar),
            }
        )
    failures = db.read("symbol_failures")
    records = failures.sort_values(["status", "symbol", "stage"]).to_dict("records") if len(failures) else []
    for r in records:
        for k, v in r.items():
            if isinstance(v, pd.Timestamp):
                r[k] = v.isoformat()
    return {"latest_session": latest, "layers": layers, "failures": records, "stale": stale_summary(db)}
