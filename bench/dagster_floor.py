"""Worker: Dagster's own cost per asset-partition on Postgres, with assets that do nothing.

Three no-op assets shaped like the symbol layer (`prices` <- `symbol_factor_exposures`,
`symbol_metrics`) on `factor_platform.defs.partitions.symbol_day_partitions`, run as ONE ranged run
(tags dagster/asset_partition_range_start/end) with the in_process executor, on an instance whose
dagster.yaml points at a scratch database on 127.0.0.1:5432. Whatever DAGSTER_EVENT_BATCH_SIZE /
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS the parent put in the environment apply.

With "portfolios": N, a second ranged run does the same for the portfolio layer's shape: one no-op
multi-asset with the seven portfolio tables on `portfolio_day_partitions`, N portfolios x `sessions`
— so the full build's floor is measured on the same partitions, not scaled from a smaller run.

args: {"symbols": int, "sessions": int, "portfolios": int (default 0), "end": "YYYY-MM-DD", "label": str,
       "metadata": bool (default false)}
emits: {"label", "seconds", "asset_partitions", "ms_per_asset_partition", "success", "env": {...}, "cpu_seconds",
        "symbol_seconds", "portfolio_seconds"}
"""

from __future__ import annotations

import datetime as dt
import os
import time

from common import (
    MINIMAL_DAGSTER_YAML,
    dagster_home,
    emit,
    log,
    plain_pg_url,
    quiet_warnings,
    scratch_postgres,
    worker_args,
)

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def floor_definitions(metadata: bool = False):
    """The three no-op assets; `metadata=True` makes them return a MaterializeResult carrying
    metadata shaped like the `prices` asset's (Dagster copies it into every partition's event)."""
    import dagster as dg

    from factor_platform.defs.partitions import symbol_day_partitions

    common = dict(partitions_def=symbol_day_partitions, backfill_policy=dg.BackfillPolicy.single_run())

    payload = {
        "rows_written": 126_000,
        "symbols": 508,
        "symbols_failed": dg.MetadataValue.json({}),
        "symbols_skipped": dg.MetadataValue.json([]),
        "option_contracts_model_priced": dg.MetadataValue.json([f"ZAAA27010{i}C00100000" for i in range(5)]),
        "source": "sample",
    }

    def body():
        if metadata:

            def fn():
                return dg.MaterializeResult(metadata=payload)
        else:

            def fn():
                return None

        # real objects, not the strings `from __future__ import annotations` would leave
        fn.__annotations__ = {"return": dg.MaterializeResult if metadata else None}
        return fn

    floor_prices = dg.asset(name="floor_prices", **common)(body())
    floor_exposures = dg.asset(name="floor_exposures", deps=[floor_prices], **common)(body())
    floor_metrics = dg.asset(name="floor_metrics", deps=[floor_prices], **common)(body())

    job = dg.define_asset_job(
        "floor_job", selection=[floor_prices, floor_exposures, floor_metrics], executor_def=dg.in_process_executor
    )
    portfolio_layer = floor_portfolio_layer()
    portfolio_job = dg.define_asset_job(
        "floor_portfolio_job", selection=[portfolio_layer], executor_def=dg.in_process_executor
    )
    return dg.Definitions(
        assets=[floor_prices, floor_exposures, floor_metrics, portfolio_layer], jobs=[job, portfolio_job]
    ), 3


def floor_portfolio_layer():
    """The portfolio layer's shape with nothing in it: a multi-asset of the seven tables."""
    import dagster as dg

    from factor_platform.defs.partitions import portfolio_day_partitions
    from factor_platform.layers.names import PORTFOLIO_ASSETS as TABLES

    specs = [dg.AssetSpec(f"floor_{t}", partitions_def=portfolio_day_partitions, skippable=True) for t in TABLES]

    @dg.multi_asset(
        name="floor_portfolio_analytics", specs=specs, can_subset=True, backfill_policy=dg.BackfillPolicy.single_run()
    )
    def floor_portfolio_analytics(context):  # no annotation: this module has `from __future__ import annotations`
        for key in sorted(context.selected_asset_keys):
            yield dg.MaterializeResult(asset_key=key)

    return floor_portfolio_analytics


def symbol_names(n: int, prefix: str = "Z") -> list[str]:
    """Deterministic 4-letter tickers Z AAA, Z AAB, ... (no clash with the factor ETFs)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [prefix + letters[i // 676 % 26] + letters[i // 26 % 26] + letters[i % 26] for i in range(n)]


def main() -> None:
    args = worker_args()
    with (
        scratch_postgres("bench_floor") as url,
        dagster_home(MINIMAL_DAGSTER_YAML.format(url=plain_pg_url(url))) as home,
    ):
        os.environ["DAGSTER_HOME"] = str(home)
        quiet_warnings()
        import dagster as dg

        from factor_platform.domain import sessions

        defs, n_assets = floor_definitions(metadata=args.get("metadata", False))
        instance = dg.DagsterInstance.get()
        end = dt.date.fromisoformat(args["end"])
        days = sessions.sessions_in_range(sessions.sessions_before(end, args["sessions"] - 1), end)
        timings = {}
        try:
            for dimension, job_name, keys in (
                ("symbol", "floor_job", symbol_names(args["symbols"])),
                ("portfolio", "floor_portfolio_job", [f"floor_pf_{i:03d}" for i in range(args.get("portfolios", 0))]),
            ):
                if not keys:
                    continue
                instance.add_dynamic_partitions(dimension, keys)
                tags = {
                    "dagster/asset_partition_range_start": f"{days[0]:%Y-%m-%d}|{keys[0]}",
                    "dagster/asset_partition_range_end": f"{days[-1]:%Y-%m-%d}|{keys[-1]}",
                }
                started, cpu = time.perf_counter(), time.process_time()
                result = defs.resolve_job_def(job_name).execute_in_process(
                    instance=instance, run_config=QUIET, tags=tags, raise_on_error=False
                )
                if not result.success:
                    raise RuntimeError(f"{job_name} failed")
                width = n_assets if dimension == "symbol" else 7
                timings[dimension] = (
                    time.perf_counter() - started,
                    time.process_time() - cpu,
                    len(days) * len(keys) * width,
                )
                seconds, cpu, n = timings[dimension]
                log(
                    f"  dagster_floor[{args['label']}]: {len(keys)} {dimension}s x {len(days)} sessions x {width} assets = {n:,} "
                    f"asset-partitions in {seconds:.1f} s ({1000 * seconds / n:.2f} ms each; this process's CPU {cpu:.1f} s)"
                )
        finally:
            instance.dispose()
    seconds, cpu, n = (sum(t[i] for t in timings.values()) for i in range(3))
    env = {
        k: os.environ.get(k) for k in ("DAGSTER_EVENT_BATCH_SIZE", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS")
    }
    log(
        f"  dagster_floor[{args['label']}]: {n:,} asset-partitions in {seconds:.1f} s ({1000 * seconds / n:.2f} ms each), env {env}"
    )
    emit(
        {
            "label": args["label"],
            "seconds": seconds,
            "asset_partitions": n,
            "ms_per_asset_partition": 1000 * seconds / n,
            "success": True,
            "env": env,
            "cpu_seconds": cpu,
            "symbol_seconds": timings["symbol"][0],
            "portfolio_seconds": timings.get("portfolio", (0.0,))[0],
        }
    )


if __name__ == "__main__":
    main()
