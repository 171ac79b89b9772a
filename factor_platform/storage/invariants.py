"""Counts behind the asset checks: rows that break a financial invariant (SQLAlchemy Core, no SQL strings).

`since`: only the rows of sessions from that day on (the partition window: older rows were checked
while they were in it), so a check costs what the window holds, not the history (docs/scale.md).
A table without an index on `date` (`portfolio_snapshots`: its key is (portfolio_id, date)) is read
through its key, one portfolio at a time: a condition on `date` alone would read every row.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from factor_platform.storage.database import Database


def _count(db: Database, table: str, condition, since: dt.date | None, *, by_key: str | None = None) -> int:
    t = db.table(table)
    query = sa.select(sa.func.count()).select_from(t).where(condition(t))
    if since is not None:
        query = query.where(t.c.date >= since)
        if by_key is not None and db.dialect == "postgresql":
            query = query.where(t.c[by_key].in_(leading_keys(db, table, by_key)))
    with db.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def leading_keys(db: Database, table: str, column: str) -> list[str]:
    """The distinct values of `column`, the first column of `table`'s primary key. On Postgres one index
    probe per value (a recursive "loose index scan": Postgres 15 has no skip scan), not every row."""
    t = db.table(table)
    c = t.c[column]
    if db.dialect != "postgresql":
        query = sa.select(c).distinct()
    else:
        following = t.alias("following")
        keys = sa.select(sa.func.min(c).label("key")).cte("keys", recursive=True)
        step = sa.select(
            sa.select(sa.func.min(following.c[column])).where(following.c[column] > keys.c.key).scalar_subquery()
        ).where(keys.c.key.is_not(None))
        keys = keys.union_all(step)
        query = sa.select(keys.c.key).where(keys.c.key.is_not(None))
    with db.engine.connect() as conn:
        return [key for (key,) in conn.execute(query)]


def newest_snapshot(db: Database) -> dt.date | None:
    """The newest `date` of `portfolio_snapshots` (None when empty): each portfolio's newest through the key."""
    if db.dialect != "postgresql":
        return db.max_date("portfolio_snapshots")
    newest = db.max_date_by(
        "portfolio_snapshots", "portfolio_id", leading_keys(db, "portfolio_snapshots", "portfolio_id")
    )
    return max(newest.values(), default=None)


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
    return _count(db, "portfolio_snapshots", lambda t: t.c.is_complete.is_(False), since, by_key="portfolio_id")
