"""One job per partitioning: a run of a job covers one rectangle of its partitions.

All run in-process (no subprocess per step: ~2 s less per run); the assets write our own tables
and return None, so no IO manager is involved. Asset checks scan whole tables, so they are not
part of every run: `asset_checks_job` runs them (nightly, and from the UI on demand).
"""

from __future__ import annotations

import dagster as dg

from factor_platform.layers.names import (
    PORTFOLIO_ASSETS,
    PORTFOLIO_LAYER_JOB,
    REFERENCE_DATA_JOB,
    SYMBOL_ASSETS,
    SYMBOL_DAY_ASSETS,
    SYMBOL_LAYER_JOB,
)

symbol_layer_job = dg.define_asset_job(
    SYMBOL_LAYER_JOB,
    selection=dg.AssetSelection.assets(*SYMBOL_DAY_ASSETS).without_checks(),
    executor_def=dg.in_process_executor,
    tags={"factor_platform/layer": "symbols"},
)
reference_data_job = dg.define_asset_job(
    REFERENCE_DATA_JOB,
    selection=dg.AssetSelection.assets(*SYMBOL_ASSETS).without_checks(),
    executor_def=dg.in_process_executor,
    tags={"factor_platform/layer": "reference"},
)
portfolio_layer_job = dg.define_asset_job(
    PORTFOLIO_LAYER_JOB,
    selection=dg.AssetSelection.assets(*PORTFOLIO_ASSETS).without_checks(),
    executor_def=dg.in_process_executor,
    tags={"factor_platform/layer": "portfolios"},
)

asset_checks_job = dg.define_asset_job(
    "asset_checks_job",
    selection=dg.AssetSelection.all_asset_checks(),
    executor_def=dg.in_process_executor,
)
