"""Dagster's own sensor -> run floor, as a code location the benchmark daemon loads beside ours.

`floor_sensor` requests one run of a no-op asset each time the file named by
BENCH_SENSOR_TRIGGER holds a new token: the time from writing the token to that run's end is
what any sensor-driven run pays before doing work (the daemon's sensor loop, at most every 5 s;
the run queue; launching the run's process), on the same instance and daemon as
`portfolio_sensor`.
"""

import os
from pathlib import Path

import dagster as dg

from factor_platform.defs.portfolios.sensors import portfolio_sensor


@dg.asset
def sensor_floor_asset() -> None:
    """Does nothing: the run's cost is Dagster's."""


sensor_floor_job = dg.define_asset_job(
    "sensor_floor_job", selection=[sensor_floor_asset], executor_def=dg.in_process_executor
)


@dg.sensor(
    job=sensor_floor_job,
    minimum_interval_seconds=portfolio_sensor.minimum_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def floor_sensor(context: dg.SensorEvaluationContext):
    path = Path(os.environ["BENCH_SENSOR_TRIGGER"])
    token = path.read_text().strip() if path.exists() else ""
    if token and token != context.cursor:
        context.update_cursor(token)
        yield dg.RunRequest(run_key=token, tags={"bench/token": token})


defs = dg.Definitions(assets=[sensor_floor_asset], jobs=[sensor_floor_job], sensors=[floor_sensor])
