"""Imported once by the fork server of ``processes.py``: the CLI and every module a command loads.

Children forked from it start with Dagster and the definitions already imported (~7 s saved per
process). Nothing here may open a connection or read a database: children must start clean.
"""

import warnings

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import factor_platform.app.cli  # noqa: E402,F401
import factor_platform.layers.books  # noqa: E402,F401
import factor_platform.running.execution  # noqa: E402,F401
from factor_platform.definitions import defs  # noqa: E402

defs()  # imports the whole defs/ folder (partition definitions read FACTOR_PLATFORM_START_DATE here)
