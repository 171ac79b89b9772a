"""factor_platform benchmarks: one `bench:` line per scenario, plus human context lines.

    .venv/bin/python bench/run.py [--quick] [--scenario NAME ...] [--profile PATH.prof] [--pyspy PATH] [--sqlite]
    .venv/bin/python bench/run.py --scenario scale [--quick | --full]

`scale` (bench/scale.py) runs only when named: Dagster's cost against the number of materialized
partitions of one asset, on simulated states of 126k..1.26M partitions (~25 minutes; --full adds 3.78M);
then (bench/scale_history.py) a sensor tick, the asset checks and the nightly plan at 1, 3 and 10 years
of history, and dagster-daemon's RSS (~25 minutes more); --scale-part ui|history|daemon picks parts.
`nightly_daemon_5000` (bench/nightly_daemon.py) also runs only when named: the nightly of 5,000 symbols
and 500 portfolios through dagster-daemon (schedule -> symbol run -> sensor -> portfolio runs), minutes.

Every scenario runs in a fresh subprocess (Dagster reads its DAGSTER_* variables at first use), on
scratch databases created on 127.0.0.1:5432 and dropped afterwards. The machine-readable line:

    bench: <scenario> seconds=<x> baseline=<name> baseline_seconds=<y> ratio=<y/x>

ratio > 1 means faster than the baseline. Where the baseline is a goal (goal_<n>s), ratio >= 1
means the goal is met. peak_memory carries GiB in the seconds fields (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time

from common import PLATFORM_DAGSTER_ENV, bench_line, log, run_worker

SCENARIOS = [
    "symbol_math",
    "dagster_floor",
    "full_build",
    "nightly_increment",
    "onboard_known_symbols",
    "onboard_new_symbols",
    "nightly_increment_5000",
    "onboard_via_sensor",
    "peak_memory",
    "rebase_held_symbol",
]
# only with --scenario: simulated Dagster states up to 1.26M partitions; the full build again, as history;
# the 5,000-symbol nightly through dagster-daemon
OPT_IN_SCENARIOS = ["scale", "history_backfill", "nightly_daemon_5000"]
BUILD_SCENARIOS = {
    "full_build",
    "nightly_increment",
    "onboard_known_symbols",
    "onboard_new_symbols",
    "peak_memory",
    "rebase_held_symbol",
}

# sizes: full = the brief's, quick = under a minute on 2 cores
SIZES = {
    "full": {
        "math": {"symbols": 500, "sessions": 252, "pairs": 200, "repeats": 3},
        # the floor on the full build's own partitions: 500 symbols + 8 ETFs + 25 option contracts,
        # 50 portfolios; Dagster's defaults cost ~20-80 ms each, hence their small run, scaled
        "floor": {"symbols": 533, "sessions": 252, "portfolios": 50},
        "floor_default": {"symbols": 10, "sessions": 10},
        "build": {"symbols": 500, "sessions": 252, "portfolios": 50, "new_symbols": 10},
        "wide": {"symbols": 5000, "portfolios": 50},
        "sensor": {"symbols": 20, "sessions": 252, "holdings": 15, "trials": 8},
        "daemon": {"symbols": 5000, "portfolios": 500},
    },
    "quick": {
        "math": {"symbols": 100, "sessions": 20, "pairs": 20, "repeats": 1},
        "floor": {"symbols": 18, "sessions": 3, "portfolios": 2},
        "floor_default": {"symbols": 2, "sessions": 2},
        "build": {"symbols": 10, "sessions": 3, "portfolios": 2, "new_symbols": 2},
        "wide": {"symbols": 40, "portfolios": 2},
        "sensor": {"symbols": 6, "sessions": 5, "holdings": 4, "trials": 1},
        "daemon": {"symbols": 40, "portfolios": 4},
    },
}
GOALS = {  # seconds (GiB for peak_memory)
    "nightly_increment": 20.0,
    "onboard_known_symbols": 4.0,
    "onboard_new_symbols": 15.0,
    "nightly_increment_5000": 60.0,
    "onboard_via_sensor": 8.0,
    "nightly_daemon_5000": 60.0,
    "peak_memory": 2.0,
    "rebase_held_symbol": 15.0,
}
MIN_SYMBOL_MATH_RATIO = 50.0
FULL_BUILD_FLOOR_FACTOR = 1.25


def latest_session() -> str:
    from factor_platform.domain import sessions

    return sessions.latest_closed_session().isoformat()


def floor(sizes: dict, end: str, *, defaults: bool, label: str | None = None) -> dict:
    env = {k: None for k in PLATFORM_DAGSTER_ENV} if defaults else dict(PLATFORM_DAGSTER_ENV)
    label = label or ("dagster_defaults" if defaults else "batch1000_subset_planned")
    return run_worker("dagster_floor.py", {**sizes, "end": end, "label": label}, env=env)[0]


def floor_in_processes(sizes: dict, end: str, n: int) -> dict:
    """The same floor as `n` concurrent runs, each over 1/n of the symbols and of the portfolios (as
    materialize(workers=n) cuts a plan): is Dagster's floor lower on n processes?"""
    from concurrent.futures import ThreadPoolExecutor

    share = {**sizes, "symbols": -(-sizes["symbols"] // n), "portfolios": -(-sizes.get("portfolios", 0) // n)}
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        parts = list(pool.map(lambda i: floor(share, end, defaults=False, label=f"process_{i + 1}_of_{n}"), range(n)))
    return {
        "seconds": max(p["seconds"] for p in parts),
        "asset_partitions": sum(p["asset_partitions"] for p in parts),
        "processes": n,
        "wall_seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced sizes, under a minute")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS + OPT_IN_SCENARIOS, help="run only these (repeatable)"
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="cProfile the full build into PATH (.prof) and print its summary"
    )
    parser.add_argument(
        "--pyspy", metavar="PATH", help="sample the full build with py-spy into PATH (raw) and print its summary"
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="also run the build scenarios on a SQLite analytics database"
    )
    parser.add_argument(
        "--patch",
        action="append",
        default=[],
        choices=["with_checks", "shared_instance"],
        help="EXPERIMENT: apply a measurement-only change in the build process (bench/build.py apply_patches)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="materialize()'s worker processes for large plans (default: the platform's, FACTOR_PLATFORM_WORKERS or one per core up to 4); "
        "with more than one, Dagster's floor is also measured as that many concurrent runs",
    )
    parser.add_argument(
        "--full", action="store_true", help="scale: also 5,000 symbols x 3 years (3.78M partitions, ~7 GiB)"
    )
    parser.add_argument(
        "--scale-size",
        action="append",
        metavar="N",
        help="scale: only these sizes (repeatable): 10k 126k 210k 315k 1260k 3780k (see bench/scale.py SIZES)",
    )
    parser.add_argument(
        "--scale-part",
        action="append",
        choices=["ui", "history", "daemon"],
        help="scale: only these parts (repeatable; default all): ui = the UI's queries, rebuild, webserver per size; "
        "history = a sensor tick, the asset checks and the nightly plan at 1, 3 and 10 years of history; "
        "daemon = dagster-daemon's RSS running the sensor's and the nightly's ticks at 10 years",
    )
    args = parser.parse_args(argv)
    from factor_platform import settings

    workers = args.workers or settings.workers()
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    chosen = args.scenario or SCENARIOS
    end = latest_session()
    load = os.getloadavg()
    log(
        f"factor_platform bench ({mode}) {dt.datetime.now():%Y-%m-%d %H:%M} on {platform.node()}: {os.cpu_count()} cores, "
        f"python {platform.python_version()}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, latest session {end}"
    )
    started = time.perf_counter()
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    # The small workers: sequential in full mode; concurrent in --quick (to stay under a minute on
    # 2 cores -- quick numbers are a smoke test, not a measurement).
    need_floor = "dagster_floor" in chosen or bool(
        (BUILD_SCENARIOS | {"nightly_increment_5000", "history_backfill"}) & set(chosen)
    )
    jobs = {}
    if "symbol_math" in chosen:
        jobs["math"] = lambda: run_worker("symbol_math.py", {**sizes["math"], "end": end})[0]
    if need_floor:
        jobs["floor"] = lambda: floor(sizes["floor"], end, defaults=False)
    if "dagster_floor" in chosen:
        jobs["floor_default"] = lambda: floor(sizes["floor_default"], end, defaults=True)
    if workers > 1 and "full_build" in chosen:
        jobs["floor_parallel"] = lambda: floor_in_processes(sizes["floor"], end, workers)
    if args.quick:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            done = {name: future.result() for name, future in futures.items()}
    else:
        done = {name: job() for name, job in jobs.items()}

    if "math" in done:
        r = done["math"]
        report(
            bench_line(
                "symbol_math",
                r["seconds"],
                f"statsmodels_sklearn_loop_x{r['pairs_total'] // r['pairs_sampled']}",
                r["baseline_seconds"],
            )
        )
        print(
            f"  symbol_math: baseline extrapolated linearly from {r['pairs_sampled']} random (symbol, date) pairs "
            f"({r['loop_seconds']:.2f} s) to {r['pairs_total']:,}; goal ratio >= {MIN_SYMBOL_MATH_RATIO:.0f}; "
            f"max |beta - reference| = {r['max_beta_diff']:.1e}"
        )

    floor_ms = None
    if need_floor:
        tuned = done["floor"]
        floor_ms = tuned["ms_per_asset_partition"]
        if "dagster_floor" in chosen:
            default = done["floor_default"]
            # per asset-partition, both scaled to the tuned run's count
            n = tuned["asset_partitions"]
            report(
                bench_line(
                    "dagster_floor", tuned["seconds"], "dagster_defaults", default["ms_per_asset_partition"] / 1000 * n
                )
            )
            print(
                f"  dagster_floor: no-op assets shaped like both layers, one ranged in-process run each on Postgres "
                f"(symbol layer {tuned['symbol_seconds']:.1f} s, portfolio layer {tuned['portfolio_seconds']:.1f} s): "
                f"{tuned['ms_per_asset_partition']:.2f} ms per asset-partition (CPU {1000 * tuned['cpu_seconds'] / tuned['asset_partitions']:.2f} ms) with DAGSTER_EVENT_BATCH_SIZE=1000 + "
                f"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true ({n:,} asset-partitions), "
                f"{default['ms_per_asset_partition']:.2f} ms with Dagster's defaults ({default['asset_partitions']:,} asset-partitions; "
                f"baseline_seconds scales that to {n:,})"
            )

    wide = None
    if {"nightly_increment_5000", "peak_memory"} & set(chosen):
        wide = run_worker(
            "nightly_wide.py",
            {**sizes["wide"], "label": mode, "pyspy": args.pyspy + ".nightly_increment_5000" if args.pyspy else None},
        )[0]
        goal = GOALS["nightly_increment_5000"]
        if "nightly_increment_5000" in chosen:
            report(bench_line("nightly_increment_5000", wide["seconds"], f"goal_{goal:g}s", goal))
            print(
                f"  nightly_increment_5000: {wide['symbols']:,} symbols + ETFs + {sizes['wide']['portfolios']} portfolios, 1 session: {wide['asset_partitions']:,} "
                f"asset-partitions in {wide['runs']} runs; floor-equivalent {floor_ms / 1000 * wide['asset_partitions']:.1f} s; "
                f"CPU of the materializing process {wide['cpu_seconds']:.0f} s; peak {wide['peak_gib']:.2f} GiB; failures {wide['failures']}"
            )

    def against_goal(scenario: str, script: str, worker_args: dict) -> dict:
        """A scenario whose baseline is its goal: the worker's result, its bench line reported."""
        result = run_worker(script, {**worker_args, "label": mode})[0]
        goal = GOALS[scenario]
        report(bench_line(scenario, result["seconds"], f"goal_{goal:g}s", goal))
        return result

    if "onboard_via_sensor" in chosen:
        r = against_goal("onboard_via_sensor", "sensor_onboarding.py", sizes["sensor"])
        print(
            f"  onboard_via_sensor: portfolio row inserted -> last snapshot written, {r['holdings']} known symbols x {r['sessions']} sessions, "
            f"through dagster-daemon + portfolio_sensor, median of {r['trials']} (mean {r['mean_seconds']:.1f} s, max {r['max_seconds']:.1f} s): "
            f"sensor {r['sensor_s']:.1f} s + queue/launch {r['launch_s']:.1f} s + run {r['run_s']:.1f} s (medians); "
            f"Dagster's own sensor -> no-op run floor on the same daemon: median {r['floor_seconds']:.1f} s (mean {r['floor_mean_seconds']:.1f} s, "
            f"max {r['floor_max_seconds']:.1f} s) = sensor {r['floor_sensor_s']:.1f} + queue/launch {r['floor_launch_s']:.1f} + run {r['floor_run_s']:.1f} s"
        )

    if "nightly_daemon_5000" in chosen:
        r = against_goal("nightly_daemon_5000", "nightly_daemon.py", sizes["daemon"])
        print(
            f"  nightly_daemon_5000: {r['symbols']:,} symbols ({r['symbol_keys']:,} keys) + {r['portfolios']} portfolios, session {r['session']}, "
            f"through dagster-daemon, nightly_schedule fired as at 18:00 New York -> last run ended: schedule evaluated + submitted {r['evaluation_s']:.1f} s, "
            f"symbol layer {r['symbol_layer_s']:.1f} s in {r['symbol_runs']} runs ("
            + ", ".join(
                f"{d['wave']}: launch {d['launch_s']:.1f} + run {d['run_s']:.1f} s" for d in r["symbol_run_detail"]
            )
            + "), "
            f"sensor wait {r['sensor_wait_s']:.1f} s, portfolio layer {r['portfolio_layer_s']:.1f} s in {r['portfolio_runs']} runs ("
            + ", ".join(
                f"{d['portfolios']} portfolios: queue {d['queue_s']:.1f} + launch {d['launch_s']:.1f} + run {d['run_s']:.1f} s"
                for d in r["portfolio_run_detail"]
            )
            + f"); sensor ticks during the nightly {r['sensor_ticks']} (median {r['sensor_tick_median_s']:.1f} s, max {r['sensor_tick_max_s']:.1f} s); "
            f"CPU s {r['cpu_seconds']}, peak GiB {r['peak_gib']}; other runs {r['other_runs'] or 'none'}; "
            f"failures {r['failures']}, portfolios without the session's snapshot {r['missing_snapshots']}"
        )

    if BUILD_SCENARIOS & set(chosen):
        analytics = ["postgres"] + (["sqlite"] if args.sqlite else [])
        for kind in analytics:
            suffix = "" if kind == "postgres" else "_sqlite"
            build_args = {
                **sizes["build"],
                "analytics": kind,
                "label": f"{mode}/{kind}",
                "profile": args.profile if kind == "postgres" else None,
                "pyspy": args.pyspy if kind == "postgres" else None,
                "patches": args.patch,
                "only_full_build": not (BUILD_SCENARIOS - {"full_build", "peak_memory"}) & set(chosen),
                "workers": workers,
            }
            results = {r["scenario"]: r for r in run_worker("build.py", build_args)}
            full = results["full_build"]
            if "full_build" in chosen:
                # the floor's runs have the build's symbol and portfolio partitions; the reference
                # data's few (2 per symbol) are added at the floor's rate
                baseline = done["floor"]["seconds"] + floor_ms / 1000 * (
                    full["asset_partitions"] - done["floor"]["asset_partitions"]
                )
                report(bench_line("full_build" + suffix, full["seconds"], "dagster_floor_x_partitions", baseline))
                print(
                    f"  full_build{suffix}: {full['symbols']} symbols x {full['sessions']} sessions + {full['portfolios']} portfolios "
                    f"= {full['asset_partitions']:,} asset-partitions in {full['runs']} runs, {full['analytics']} analytics DB; "
                    f"{1000 * full['seconds'] / full['asset_partitions']:.2f} ms each vs floor {floor_ms:.2f} ms; "
                    f"goal ratio >= {1 / FULL_BUILD_FLOOR_FACTOR:.2f}; CPU of the materializing process {full['cpu_seconds']:.0f} s "
                    f"(its worker processes not counted); {workers} worker process(es); failures {full['failures']}"
                )
                if "floor_parallel" in done:
                    fp = done["floor_parallel"]
                    report(
                        bench_line(
                            "full_build_vs_parallel_floor" + suffix,
                            full["seconds"],
                            f"dagster_floor_{fp['processes']}_processes",
                            fp["seconds"] + floor_ms / 1000 * (full["asset_partitions"] - fp["asset_partitions"]),
                        )
                    )
                    print(
                        f"  full_build_vs_parallel_floor{suffix}: the same floor as {fp['processes']} concurrent no-op runs "
                        f"(each 1/{fp['processes']} of the symbols and portfolios) takes {fp['seconds']:.1f} s against "
                        f"{done['floor']['seconds']:.1f} s in one process: like for like with {workers} worker process(es)"
                    )
            if "peak_memory" in chosen:
                gib = results["peak_memory"]["gib"]
                wide_gib = wide["peak_gib"] if wide and kind == "postgres" else 0.0
                report(bench_line("peak_memory" + suffix, max(gib, wide_gib), "goal_2GiB", GOALS["peak_memory"]))
                print(
                    f"  peak_memory{suffix}: ru_maxrss of the materializing processes (values in GiB, not seconds): "
                    f"{gib:.2f} GiB for the full build and the later scenarios"
                    + (f", {wide_gib:.2f} GiB for the 5,000-symbol nightly" if wide_gib else "")
                )
            for name in ("nightly_increment", "onboard_known_symbols", "onboard_new_symbols"):
                if name in chosen and name in results:
                    r = results[name]
                    goal = GOALS[name]
                    report(bench_line(name + suffix, r["seconds"], f"goal_{goal:g}s", goal))
                    extra = f", import {r['import_seconds']:.2f} s" if "import_seconds" in r else ""
                    print(
                        f"  {name}{suffix}: {r['asset_partitions']:,} asset-partitions in {r['runs']} runs{extra}; "
                        f"floor-equivalent {floor_ms / 1000 * r['asset_partitions']:.1f} s; failures {r['failures']}"
                    )
            if "rebase_held_symbol" in chosen and "rebase_held_symbol" in results:
                r = results["rebase_held_symbol"]
                goal = GOALS["rebase_held_symbol"]
                report(bench_line("rebase_held_symbol" + suffix, r["seconds"], f"goal_{goal:g}s", goal))
                print(
                    f"  rebase_held_symbol{suffix}: {r['symbol']} (held by {r['holders']} portfolios) re-based by --refresh: "
                    f"{r['asset_partitions']:,} asset-partitions recomputed vs a minimum of {r['minimum']:,} "
                    f"(ratio {r['asset_partitions'] / max(r['minimum'], 1):.2f}) in {r['runs']} runs; "
                    f"left stale {r['left_stale']}; failures {r['failures']}"
                )
            if args.profile and kind == "postgres":
                from profile_summary import summarize

                print(summarize(args.profile))
            if args.pyspy and kind == "postgres":
                from profile_summary import summarize_pyspy

                print(summarize_pyspy(args.pyspy))
                for name in ("nightly_increment", "onboard_known_symbols", "onboard_new_symbols"):
                    if os.path.exists(f"{args.pyspy}.{name}"):
                        print(summarize_pyspy(f"{args.pyspy}.{name}"))

    if "history_backfill" in chosen:
        # The full build's sessions as history (FACTOR_PLATFORM_PARTITION_MONTHS=1: only this month's
        # sessions are partitions): the layers' code in history runs, spans instead of Dagster events.
        build_args = {**sizes["build"], "analytics": "postgres", "label": f"{mode}/history", "only_full_build": True}
        env = {"FACTOR_PLATFORM_PARTITION_MONTHS": "1"}
        r = {x["scenario"]: x for x in run_worker("build.py", {**build_args, "workers": workers}, env=env)}[
            "full_build"
        ]
        report(
            bench_line(
                "history_backfill", r["seconds"], "dagster_floor_x_partitions", floor_ms / 1000 * r["asset_partitions"]
            )
        )
        print(
            f"  history_backfill: the full build ({r['symbols']} symbols x {r['sessions']} sessions + {r['portfolios']} portfolios "
            f"= {r['asset_partitions']:,} asset-partitions, {r['runs']} runs) with the sessions before this month as history: "
            f"{r['asset_partitions'] / r['seconds']:,.0f} partitions/s against the floor's {1000 / floor_ms:,.0f}/s "
            f"(Dagster's events for a partitioned run alone); {workers} worker process(es); failures {r['failures']}"
        )

    if "scale" in chosen:
        from scale import scenario as scale_scenario

        scale_scenario(quick=args.quick, full=args.full, sizes=args.scale_size, parts=args.scale_part, report=report)

    load = os.getloadavg()
    log(
        f"bench ({mode}) done in {time.perf_counter() - started:.0f} s; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
