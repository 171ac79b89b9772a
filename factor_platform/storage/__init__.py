"""Storage: the analytics database through SQLAlchemy Core. No Dagster imports here.

``Database(url)`` is the whole interface (see docs/architecture.md, "storage interface");
``schema`` holds the table definitions from which ``sql/*.sql`` is generated.
"""

from factor_platform.storage import schema
from factor_platform.storage.database import Database, split_sql_statements, utcnow

__all__ = ["Database", "schema", "split_sql_statements", "utcnow"]
