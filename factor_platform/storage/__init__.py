"""Storage: the analytics database through SQLAlchemy Core. No Dagster imports here.

``Database(url)`` is the whole interface (see docs/architecture.md, "storage interface");
``schema`` holds the table definitions from which ``sql/*.sql`` is generated.
"""

from factor_platform.storage import schema
from factor_platform.storage.database import Database
from factor_platform.storage.frames import utcnow
from factor_platform.storage.sql_script import split_sql_statements

__all__ = ["Database", "schema", "split_sql_statements", "utcnow"]
