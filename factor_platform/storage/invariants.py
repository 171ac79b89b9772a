"""Counts behind the asset checks: rows that break a financial invariant (SQLAlchemy Core, no SQL strings).

`since`: only the rows of sessions from that day on (the partition window: older rows were checked
while they were in it), so a check costs what the window holds, not the history (docs/scale.md).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from factor_platform.storage.database import Database


def _count(db: Database, table: str, condition, since: dt.date | None) -> int:
    t = db.table(table)
    query = sa.select(sa.func.count()).select_from(t).where(condition(t))
    if since is not None:
        query = query.where(t.c.date >= since)
    with db.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def nonpositive_prices(db: Database, since: dt.date | None = None) -> int:
    return _count(db, "prices", lambda t: sa.or_(t.c.close <= 0, t.c.adj_close <= 0), since)


def invalid_betas(db: Database, since: dt.date | None = None) -> int:
    """Betas that are NULL or not finite, or an R² outside [0, 1] (a NaN compares false to everything)."""
    inf = float("inf")

    def bad(t):
        return sa.or_(
            t.c.beta.is_(None),
            t.c.beta >= inf,
            t.c.beta <= -inf,
            t.c.beta != t.c.beta,
            t.c.r_squared < -1e-9,
            t.c.r_squared > 1 + 1e-9,
        )

    return _count(db, "symbol_factor_exposures", bad, since)


def incomplete_snapshots(db: Database, since: dt.date | None = None) -> int:
    return _count(db, "portfolio_snapshots", lambda t: t.c.is_complete.is_(False), since)
