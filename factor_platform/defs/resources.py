"""One resource per external system: the analytics database and the market-data source.

Both read the contract's environment variables when left unset, so `dagster dev`, the CLI and
tests configure them the same way.
"""

from __future__ import annotations

from functools import lru_cache

import dagster as dg

from factor_platform.settings import Settings
from factor_platform.sources import PriceSource, price_source
from factor_platform.storage import Database

# Dagster pool of the steps that call the market-data source (its limit: the instance's `concurrency.pools`).
MARKET_DATA_POOL = "market_data"
POOLS = (MARKET_DATA_POOL,)


@lru_cache(maxsize=8)
def _database(url: str) -> Database:
    database = Database(url)
    database.init_schema()
    return database


class AnalyticsDatabase(dg.ConfigurableResource):
    """The analytics tables (contract §3). `url` defaults to FACTOR_PLATFORM_DB_URL."""

    url: str | None = None

    def get(self) -> Database:
        return _database(self.url or Settings.from_env().db_url)


class MarketData(dg.ConfigurableResource):
    """Prices, profiles and fundamentals. `source` defaults to FACTOR_PLATFORM_PRICE_SOURCE."""

    source: str | None = None

    def get(self) -> PriceSource:
        settings = Settings.from_env()
        return price_source(self.source or settings.price_source, calendar=settings.calendar)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {"analytics_db": AnalyticsDatabase(), "market_data": MarketData()}


@dg.definitions
def resources() -> dg.Definitions:
    # in_process as the default executor also for Dagster's own CLI and the UI's ad-hoc runs: the
    # assets write our tables and return None, so a process per step would only add ~2 s a run.
    return dg.Definitions(resources=default_resources(), executor=dg.in_process_executor)
