"""One job per partitioning: a run of a job covers one rectangle of its partitions.

All run in-process (no subprocess per step: ~2 s less per run); the assets write our own tables
and return None, so no IO manager is involved. Asset checks scan whole tables, so they are not
part of every run: `asset_checks_job` runs them (nightly, and from the UI on demand).
"""

from __future__ import annotations

import dagster as dg

from factor_platform.layers.names import LAYER_TAG, LAYERS

symbol_layer_job, reference_data_job, portfolio_layer_job = (
    dg.define_asset_job(
        layer.job,
        selection=dg.AssetSelection.assets(*layer.assets).without_checks(),
        executor_def=dg.in_process_executor,
        tags={LAYER_TAG: layer.tag},
    )
    for layer in LAYERS
)

asset_checks_job = dg.define_asset_job(
    "asset_checks_job",
    selection=dg.AssetSelection.all_asset_checks(),
    executor_def=dg.in_process_executor,
)
