"""The analytics schema, defined once.

The SQLAlchemy ``MetaData`` below is the single source of truth for the tables of the
contract (CONTRACT.md §3). ``sql/sqlite.sql`` and ``sql/postgresql.sql`` are generated
from it (``python -m factor_platform.storage.schema``) and a test asserts that they are
identical to :func:`ddl`, so the files that operators read are the DDL that runs.

Conventions: natural primary keys; ``DATE`` columns (SQLite stores ``YYYY-MM-DD``);
timestamps are naive UTC; floats are ``DOUBLE PRECISION`` (``REAL`` on SQLite).
Columns may be added, never renamed or removed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.functions import FunctionElement

SCHEMA_VERSION = 3
DIALECTS = ("sqlite", "postgresql")
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

FAILURE_STATUSES = ("open", "skipped")


class utcnow(FunctionElement):
    """Server-side "now" as naive UTC on both dialects."""

    type = sa.TIMESTAMP()
    inherit_cache = True


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element, compiler, **kw):  # SQLite's CURRENT_TIMESTAMP is UTC
    return "CURRENT_TIMESTAMP"


@compiles(utcnow, "postgresql")
def _utcnow_postgresql(element, compiler, **kw):
    return "timezone('utc', now())"


FLOAT = sa.Double().with_variant(sa.REAL(), "sqlite")
TEXT = sa.Text()
DATE = sa.Date()
TIMESTAMP = sa.TIMESTAMP()
INTEGER = sa.Integer()
BIGINT = sa.BigInteger()
BOOLEAN = sa.Boolean()

metadata = sa.MetaData()


def _key(name: str, type_) -> sa.Column:
    return sa.Column(name, type_, primary_key=True, nullable=False)


def _floats(*names: str) -> list[sa.Column]:
    return [sa.Column(name, FLOAT) for name in names]


# ---------------------------------------------------------------- symbol layer
prices = sa.Table(
    "prices",
    metadata,
    _key("symbol", TEXT),
    _key("date", DATE),
    *_floats("open", "high", "low", "close", "adj_close"),
    sa.Column("volume", BIGINT),
    sa.Column("source", TEXT),
)
sa.Index("ix_prices_date", prices.c.date)

symbol_factor_exposures = sa.Table(
    "symbol_factor_exposures",
    metadata,
    _key("symbol", TEXT),
    _key("date", DATE),
    _key("factor", TEXT),
    *_floats("beta", "alpha", "r_squared", "std_error", "p_value"),
    sa.Column("n_obs", INTEGER),
    sa.Column("method", TEXT),
)
sa.Index("ix_symbol_factor_exposures_date", symbol_factor_exposures.c.date)

symbol_metrics = sa.Table(
    "symbol_metrics",
    metadata,
    _key("symbol", TEXT),
    _key("date", DATE),
    *_floats(
        "return_1d",
        "return_5d",
        "return_21d",
        "return_63d",
        "return_252d",
        "volatility_21d",
        "volatility_63d",
        "high_52w",
        "low_52w",
    ),
)
sa.Index("ix_symbol_metrics_date", symbol_metrics.c.date)

company_profiles = sa.Table(
    "company_profiles",
    metadata,
    _key("symbol", TEXT),
    sa.Column("name", TEXT),
    sa.Column("sector", TEXT),
    sa.Column("industry", TEXT),
    sa.Column("market_cap", FLOAT),
    sa.Column("currency", TEXT),
    sa.Column("updated_at", TIMESTAMP),
)

fundamentals = sa.Table(
    "fundamentals",
    metadata,
    _key("symbol", TEXT),
    _key("period_end", DATE),
    _key("metric", TEXT),
    sa.Column("value", FLOAT),
)

symbol_failures = sa.Table(
    "symbol_failures",
    metadata,
    _key("symbol", TEXT),
    _key("stage", TEXT),
    sa.Column("date", DATE),
    sa.Column("error", TEXT),
    sa.Column("attempts", INTEGER, nullable=False, server_default=sa.text("1")),
    sa.Column("first_seen", TIMESTAMP, server_default=utcnow()),
    sa.Column("last_seen", TIMESTAMP, server_default=utcnow()),
    # 'open': retried on the next run; 'skipped': given up on (e.g. delisted after N failures).
    sa.Column("status", TEXT, nullable=False, server_default=sa.text("'open'")),
    sa.CheckConstraint("status IN ('open', 'skipped')", name="ck_symbol_failures_status"),
)
sa.Index("ix_symbol_failures_stage_status", symbol_failures.c.stage, symbol_failures.c.status)

corporate_actions = sa.Table(
    "corporate_actions",
    metadata,
    _key("symbol", TEXT),
    _key("date", DATE),
    _key("kind", TEXT),
    # split: new shares per old share (4 for 4:1); dividend: cash per share on the stored basis, date = ex-date
    sa.Column("value", FLOAT, nullable=False),
    sa.Column("source", TEXT),
    sa.CheckConstraint("kind IN ('split', 'dividend')", name="ck_corporate_actions_kind"),
)

# What the source changed under data already computed: the partitions of `asset` for `key` on
# sessions first_date..last_date are stale until a run recomputes them (planner, schedule, sensor).
stale_partitions = sa.Table(
    "stale_partitions",
    metadata,
    _key("asset", TEXT),
    _key("key", TEXT),
    _key("first_date", DATE),
    sa.Column("last_date", DATE, nullable=False),
    sa.Column("reason", TEXT),
    sa.Column("recorded_at", TIMESTAMP, server_default=utcnow()),
)

# sessions first_date..last_date of an asset for a key computed outside Dagster's partition window
# (history runs, and partitions archived from Dagster's event log): the planner's record of what
# history is done (planning.history, docs/scale.md); one row per contiguous span
history_spans = sa.Table(
    "history_spans",
    metadata,
    _key("asset", TEXT),
    _key("key", TEXT),
    _key("first_date", DATE),
    sa.Column("last_date", DATE, nullable=False),
    sa.Column("recorded_at", TIMESTAMP, server_default=utcnow()),
)

# price re-basings applied to stored history (a split or dividend the vendor re-based into it)
price_rebasings = sa.Table(
    "price_rebasings",
    metadata,
    _key("symbol", TEXT),
    _key("recorded_at", TIMESTAMP),
    *_floats("close_factor", "adj_factor"),
    sa.Column("before_date", DATE),
    sa.Column("source", TEXT),
)

# ------------------------------------------------------------- portfolio layer
portfolios = sa.Table(
    "portfolios",
    metadata,
    _key("portfolio_id", TEXT),
    sa.Column("name", TEXT),
    sa.Column("starting_equity", FLOAT),
    sa.Column("inception_date", DATE),
    sa.Column("created_at", TIMESTAMP, server_default=utcnow()),
    sa.Column("book_version", INTEGER),  # +1 on each import that changed the book; NULL: written by another application
)

positions = sa.Table(
    "positions",
    metadata,
    _key("position_id", TEXT),
    sa.Column("portfolio_id", TEXT, nullable=False),
    sa.Column("symbol", TEXT, nullable=False),
    sa.Column("position_type", TEXT),
    sa.Column("investment_class", TEXT),
    sa.Column("quantity", FLOAT),
    sa.Column("entry_price", FLOAT),
    sa.Column("entry_date", DATE),
    sa.Column("exit_date", DATE),
    sa.Column("exit_price", FLOAT),
    sa.Column("underlying", TEXT),
    sa.Column("strike", FLOAT),
    sa.Column("expiration", DATE),
    sa.Column("option_type", TEXT),
    sa.Column("manual_market_value", FLOAT),
    sa.Column("sector", TEXT),
)
sa.Index("ix_positions_portfolio_id", positions.c.portfolio_id)

position_values = sa.Table(
    "position_values",
    metadata,
    _key("portfolio_id", TEXT),
    _key("position_id", TEXT),
    _key("date", DATE),
    *_floats("price", "market_value", "exposure", "delta"),
    sa.Column("price_source", TEXT),
)
sa.Index("ix_position_values_portfolio_id_date", position_values.c.portfolio_id, position_values.c.date)

portfolio_snapshots = sa.Table(
    "portfolio_snapshots",
    metadata,
    _key("portfolio_id", TEXT),
    _key("date", DATE),
    *_floats(
        "equity",
        "cash",
        "long_exposure",
        "short_exposure",
        "gross_exposure",
        "net_exposure",
        "daily_pnl",
        "daily_return",
        "cumulative_pnl",
    ),
    sa.Column("n_positions", INTEGER),
    sa.Column("is_complete", BOOLEAN),
)

portfolio_factor_exposures = sa.Table(
    "portfolio_factor_exposures",
    metadata,
    _key("portfolio_id", TEXT),
    _key("date", DATE),
    _key("factor", TEXT),
    *_floats("beta", "exposure_dollar"),
)

portfolio_sector_weights = sa.Table(
    "portfolio_sector_weights",
    metadata,
    _key("portfolio_id", TEXT),
    _key("date", DATE),
    _key("sector", TEXT),
    sa.Column("weight", FLOAT),
)

portfolio_risk = sa.Table(
    "portfolio_risk",
    metadata,
    _key("portfolio_id", TEXT),
    _key("date", DATE),
    *_floats(
        "volatility_21d", "volatility_63d", "volatility_forecast", "hhi", "effective_n", "top3_weight", "top10_weight"
    ),
)

portfolio_correlations = sa.Table(
    "portfolio_correlations",
    metadata,
    _key("portfolio_id", TEXT),
    _key("date", DATE),
    _key("symbol_a", TEXT),
    _key("symbol_b", TEXT),
    sa.Column("rho", FLOAT),
    sa.Column("cluster", INTEGER),
)

stress_results = sa.Table(
    "stress_results",
    metadata,
    _key("portfolio_id", TEXT),
    _key("date", DATE),
    _key("scenario", TEXT),
    *_floats("pnl", "pnl_pct"),
)

# ------------------------------------------------------------------ bookkeeping
schema_version = sa.Table(
    "schema_version",
    metadata,
    _key("version", INTEGER),
    sa.Column("applied_at", TIMESTAMP, server_default=utcnow()),
)

#: The tables that hold data (everything but ``schema_version``), by name.
DATA_TABLES: dict[str, sa.Table] = {
    name: table for name, table in metadata.tables.items() if name != schema_version.name
}


def _dialect(name: str) -> sa.engine.Dialect:
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.dialect()
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()
    raise ValueError(f"unsupported dialect {name!r}; expected one of {DIALECTS}")


def _tidy(statement: str) -> str:
    lines = [line.rstrip().replace("\t", "    ") for line in statement.strip().splitlines()]
    return "\n".join(lines) + ";"


def ddl(dialect_name: str) -> str:
    """The idempotent DDL of the whole schema for one dialect (the content of ``sql/<dialect>.sql``)."""
    dialect = _dialect(dialect_name)
    parts = [
        f"-- factor_platform analytics schema, version {SCHEMA_VERSION}, {dialect_name}.",
        "-- Generated from factor_platform/storage/schema.py by",
        "--     python -m factor_platform.storage.schema",
        "-- Do not edit by hand; a test asserts this file equals the generated DDL.",
        "",
    ]
    for table in metadata.tables.values():  # contract order
        parts.append(_tidy(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect))))
        for index in sorted(table.indexes, key=lambda ix: ix.name):
            parts.append(_tidy(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))))
        parts.append("")
    parts.append(f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION}) ON CONFLICT (version) DO NOTHING;")
    return "\n".join(parts) + "\n"


def sql_path(dialect_name: str) -> Path:
    return SQL_DIR / f"{dialect_name}.sql"


def write_sql_files(directory: Path = SQL_DIR) -> list[Path]:
    """(Re)generate ``sql/<dialect>.sql`` from the metadata."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DIALECTS:
        path = directory / f"{name}.sql"
        path.write_text(ddl(name), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_sql_files(Path(sys.argv[1]) if len(sys.argv) > 1 else SQL_DIR):
        print(written_path)
