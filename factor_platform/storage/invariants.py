"""Counts behind the asset checks: rows that break a financial invariant (SQLAlchemy Core, no SQL strings)."""

from __future__ import annotations

import sqlalchemy as sa

from factor_platform.storage.database import Database


def _count(db: Database, table: str, condition) -> int:
    t = db.table(table)
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t).where(condition(t))).scalar_one())


def nonpositive_prices(db: Database) -> int:
    return _count(db, "prices", lambda t: sa.or_(t.c.close <= 0, t.c.adj_close <= 0))


def invalid_betas(db: Database) -> int:
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

    return _count(db, "symbol_factor_exposures", bad)


def incomplete_snapshots(db: Database) -> int:
    return _count(db, "portfolio_snapshots", lambda t: t.c.is_complete.is_(False))
