"""The layers' assets and jobs by name: one list that the jobs, the planner and the workers share."""

from __future__ import annotations

from dataclasses import dataclass

SYMBOL_DAY_ASSETS = ["prices", "symbol_factor_exposures", "symbol_metrics"]  # in the order they read each other
SYMBOL_ASSETS = ["company_profiles", "fundamentals"]
# One asset per table the portfolio layer computes (and an import of a changed book deletes).
PORTFOLIO_ASSETS = [
    "position_values",
    "portfolio_snapshots",
    "portfolio_factor_exposures",
    "portfolio_sector_weights",
    "portfolio_risk",
    "portfolio_correlations",
    "stress_results",
]

SYMBOL_LAYER_JOB = "symbol_layer_job"
REFERENCE_DATA_JOB = "reference_data_job"
PORTFOLIO_LAYER_JOB = "portfolio_layer_job"
REFRESH_TAG = "factor_platform/refresh"  # "true" on a prices run: re-read each symbol's whole stored history
PORTFOLIO_STALE_ASSET = "portfolio_analytics"  # the portfolio tables are marked stale together
HISTORY_JOB = "history_job"  # sessions before the partition window (docs/scale.md), any layer

LAYER_TAG = "factor_platform/layer"  # the run tag naming a run's layer (a concurrency limit keys on it)
# A nightly in waves (`planning.waves.nightly_waves`): the session it is for, and the wave of the run.
NIGHTLY_TAG = "factor_platform/nightly"
WAVE_TAG = "factor_platform/wave"


@dataclass(frozen=True)
class Layer:
    """One layer's job: its name, the assets a run of it may materialize, and its `LAYER_TAG` value."""

    job: str
    assets: tuple[str, ...]
    tag: str


# Every layer job, in the order a plan runs them; each executor builds its jobs from these.
LAYERS = (
    Layer(SYMBOL_LAYER_JOB, tuple(SYMBOL_DAY_ASSETS), "symbols"),
    Layer(REFERENCE_DATA_JOB, tuple(SYMBOL_ASSETS), "reference"),
    Layer(PORTFOLIO_LAYER_JOB, tuple(PORTFOLIO_ASSETS), "portfolios"),
)
