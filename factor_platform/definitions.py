"""Dagster entry point: `dagster dev -m factor_platform.definitions` loads the defs/ folder."""

import warnings
from pathlib import Path

import dagster as dg

# MultiPartitionMapping and friends are "beta"; the warning repeats on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
