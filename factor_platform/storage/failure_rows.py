"""The bookkeeping of `symbol_failures` (contract §3): one row per open (symbol, stage), its attempts
counted, closed by a success or given up as `skipped`. A part of `Database` (its methods)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from factor_platform.storage import schema
from factor_platform.storage.bulk import prepare
from factor_platform.storage.frames import utcnow


class FailureRows:
    """`Database`'s failure methods (they use its transactions and conditions)."""

    def _insert(self, table: sa.Table):
        return (sqlite_dialect if self.dialect == "sqlite" else pg_dialect).insert(table)

    def record_failures(self, failures: pd.DataFrame, conn: Connection | None = None) -> int:
        """Upsert open failures ``[symbol, stage, date, error (, status)]``.

        New (symbol, stage): attempts 1, first_seen = last_seen = now, status 'open' unless given.
        Existing: attempts + 1, last_seen = now, date = the later of the two, error = the new one,
        first_seen kept, status kept unless the frame sets it.
        """
        t = schema.symbol_failures
        allowed = {"symbol", "stage", "date", "error", "status"}
        unknown = [c for c in failures.columns if c not in allowed]
        if unknown:
            raise ValueError(
                f"symbol_failures: record_failures() got unknown column(s) {unknown}; "
                f"expected symbol, stage, date, error (, status)"
            )
        prepared = prepare(t, failures)
        if prepared is None:
            return 0
        values = {name: vector.python() for name, vector in zip(prepared.names, prepared.vectors)}
        if "status" in values:
            bad = {s for s in values["status"] if s is not None and s not in schema.FAILURE_STATUSES}
            if bad:
                raise ValueError(f"symbol_failures.status: {sorted(bad)} not in {schema.FAILURE_STATUSES}")
        now = utcnow()
        absent = [None] * prepared.n_rows
        rows = [
            {"symbol": symbol, "stage": stage, "date": date, "error": error, "status": status}
            for symbol, stage, date, error, status in zip(
                values["symbol"],
                values["stage"],
                values.get("date", absent),
                values.get("error", absent),
                values.get("status", absent),
            )
        ]

        def work(c: Connection) -> None:
            for given in (False, True):
                batch = [
                    {**r, "status": r["status"] or "open", "attempts": 1, "first_seen": now, "last_seen": now}
                    for r in rows
                    if (r["status"] is not None) == given
                ]
                if not batch:
                    continue
                insert = self._insert(t)
                new = insert.excluded
                set_ = {
                    "date": sa.case(
                        (new.date.is_(None), t.c.date),
                        (t.c.date.is_(None), new.date),
                        (new.date > t.c.date, new.date),
                        else_=t.c.date,
                    ),
                    "error": sa.func.coalesce(new.error, t.c.error),
                    "attempts": t.c.attempts + 1,
                    "last_seen": new.last_seen,
                }
                if given:
                    set_["status"] = new.status
                c.execute(insert.on_conflict_do_update(index_elements=["symbol", "stage"], set_=set_), batch)

        self._run(conn, work)
        return len(rows)

    def clear_failures(
        self, symbol_stage_pairs: pd.DataFrame, conn: Connection | None = None, *, statuses: Sequence[str] = ("open",)
    ) -> int:
        """Delete the failures of these (symbol, stage) pairs whose status is in ``statuses``.

        Extra columns of the frame are ignored (a success frame can be passed as is). Returns rows deleted.
        """
        missing = [c for c in ("symbol", "stage") if c not in symbol_stage_pairs.columns]
        if missing:
            raise ValueError(f"symbol_failures: clear_failures() needs columns symbol, stage; missing {missing}")
        pairs = symbol_stage_pairs[["symbol", "stage"]].dropna().drop_duplicates()
        condition_sets = [
            clauses
            for stage, group in pairs.groupby("stage", sort=True)
            for clauses in self._conditions(
                schema.symbol_failures,
                {"stage": stage, "status": list(statuses), "symbol": sorted(group["symbol"].astype(str))},
            )
        ]
        return self._run(conn, lambda c: self._delete(c, schema.symbol_failures, condition_sets))

    def mark_skipped(
        self, symbols: Sequence[str], stage: str, conn: Connection | None = None, *, error: str | None = None
    ) -> int:
        """Mark (symbol, stage) as 'skipped' (given up, e.g. delisted); creates the row if needed."""
        if isinstance(symbols, str):
            symbols = [symbols]
        symbols = sorted(dict.fromkeys(str(s) for s in symbols))
        if not symbols:
            return 0
        t = schema.symbol_failures
        now = utcnow()
        rows = [
            {
                "symbol": s,
                "stage": stage,
                "date": None,
                "error": error or "marked skipped",
                "attempts": 0,
                "first_seen": now,
                "last_seen": now,
                "status": "skipped",
            }
            for s in symbols
        ]
        insert = self._insert(t)
        set_ = {"status": insert.excluded.status, "last_seen": insert.excluded.last_seen}
        if error is not None:
            set_["error"] = insert.excluded.error
        statement = insert.on_conflict_do_update(index_elements=["symbol", "stage"], set_=set_)
        self._run(conn, lambda c: c.execute(statement, rows))
        return len(rows)
