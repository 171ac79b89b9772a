"""Where the time of a profiled full build goes: inclusive times of named functions, as a tree.

    .venv/bin/python bench/profile_summary.py PATH.prof [--top N]

Times are cProfile's cumulative (inclusive) seconds of the functions named below, so a child is
part of its parent; "rest" lines are the parent minus its listed children. cProfile adds overhead
per Python call, which inflates Dagster's many small calls more than numpy-heavy code: read the
shares, not the absolute seconds (the un-profiled bench line has those).
"""

from __future__ import annotations

import argparse
import pstats

# (label, path fragment, function name, children)
Node = tuple[str, str, str, list]

TREE: list[Node] = [
    (
        "materialize() total",
        "factor_platform/running/execution.py",
        "materialize",
        [
            (
                "planning (plan_materialization: instance + DB queries)",
                "factor_platform/planning/planner.py",
                "plan_materialization",
                [],
            ),
            ("DagsterInstance creation (get_instance)", "factor_platform/running/instance.py", "get_instance", []),
            (
                "Definitions load (load_from_defs_folder)",
                "factor_platform/running/runs.py",
                "load_definitions",
                [],
            ),
            (
                "Dagster runs (execute_in_process)",
                "dagster/_core/definitions/job_definition.py",
                "execute_in_process",
                [
                    (
                        "run creation (create_run_for_job)",
                        "dagster/_core/instance/runs/run_domain.py",
                        "create_run_for_job",
                        [
                            (
                                "planned events (_log_asset_planned_events)",
                                "dagster/_core/instance/runs/run_domain.py",
                                "_log_asset_planned_events",
                                [],
                            ),
                        ],
                    ),
                    ("OUR asset bodies: symbol layer prices", "factor_platform/defs/symbols/assets.py", "prices", []),
                    (
                        "OUR asset bodies: symbol_factor_exposures + symbol_metrics (multi-asset)",
                        "factor_platform/defs/symbols/assets.py",
                        "symbol_analytics",
                        [],
                    ),
                    (
                        "OUR asset bodies: company_profiles + fundamentals",
                        "factor_platform/layers/symbols.py",
                        "update_reference",
                        [],
                    ),
                    (
                        "OUR asset bodies: portfolio_analytics (multi-asset)",
                        "factor_platform/defs/portfolios/assets.py",
                        "portfolio_analytics",
                        [],
                    ),
                    (
                        "Dagster: per-partition materialization events (build + store)",
                        "dagster/_core/execution/plan/execute_step.py",
                        "_log_materialization_or_observation_events_for_asset",
                        [
                            (
                                "event-log batch writes (dagster_postgres store_event_batch)",
                                "dagster_postgres/event_log/event_log.py",
                                "store_event_batch",
                                [
                                    (
                                        "serialize events to rows (prepare_insert_event_batch)",
                                        "dagster/_core/storage/event_log/sql_event_log.py",
                                        "prepare_insert_event_batch",
                                        [],
                                    ),
                                    (
                                        "asset_event_tags inserts (_store_asset_event_tags)",
                                        "dagster/_core/storage/event_log/sql_event_log.py",
                                        "_store_asset_event_tags",
                                        [],
                                    ),
                                ],
                            ),
                        ],
                    ),
                    (
                        "Dagster: data-version provenance (_fetch_input_asset_version_info)",
                        "dagster/_core/execution/context/data_version_cache.py",
                        "_fetch_input_asset_version_info",
                        [],
                    ),
                    (
                        "Dagster: context.partition_keys (multi-partition key ranges)",
                        "dagster/_core/definitions/partitions/definition/multi.py",
                        "get_partition_keys_in_range",
                        [],
                    ),
                ],
            ),
        ],
    ),
]

# Our own code by concern, wherever it is called from (inclusive; these overlap nothing above
# except that they sit inside the asset bodies and planning).
CONCERNS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "reads (Database.read / max_date_by / count)",
        [("factor_platform/storage/database.py", "read"), ("factor_platform/storage/database.py", "max_date_by")],
    ),
    (
        "upserts + deletes (bulk.write / Database._delete)",
        [("factor_platform/storage/bulk.py", "write"), ("factor_platform/storage/database.py", "_delete")],
    ),
    ("failure bookkeeping (settle_failures)", [("factor_platform/layers/failures.py", "settle_failures")]),
    ("math: factor_exposures (calc.factors)", [("factor_platform/calc/factors.py", "factor_exposures")]),
    (
        "math: symbol_metrics + simple_returns",
        [("factor_platform/calc/metrics.py", "symbol_metrics"), ("factor_platform/calc/returns.py", "simple_returns")],
    ),
    (
        "math: portfolio valuation + P&L (calc.portfolio)",
        [("factor_platform/calc/portfolio.py", "value_positions"), ("factor_platform/calc/portfolio.py", "snapshots")],
    ),
    (
        "math: portfolio risk (calc.risk)",
        [
            ("factor_platform/calc/risk.py", name)
            for name in (
                "factor_exposures",
                "holdings_volatility",
                "concentration",
                "correlations",
                "stress",
                "sector_weights",
            )
        ],
    ),
    ("price panels (panels.price_panels, incl. its reads)", [("factor_platform/layers/panels.py", "price_panels")]),
    (
        "sample source fetch (prices, profiles, fundamentals)",
        [
            ("factor_platform/sources/sample.py", "fetch_prices"),
            ("factor_platform/sources/sample.py", "fetch_profiles"),
            ("factor_platform/sources/sample.py", "fetch_fundamentals"),
        ],
    ),
    ("psycopg2 connect (new connections, all code)", [("~", "<built-in method psycopg2._psycopg._connect>")]),
    (
        "psycopg2 cursor.execute (server time + transfer, all code)",
        [("~", "<method 'execute' of 'psycopg2.extensions.cursor' objects>")],
    ),
    (
        "psycopg2 copy_expert (our binary COPY)",
        [("~", "<method 'copy_expert' of 'psycopg2.extensions.cursor' objects>")],
    ),
    ("commits (all code)", [("~", "<method 'commit' of 'psycopg2.extensions.connection' objects>")]),
]


def _cumtime(stats: pstats.Stats, path: str, name: str) -> tuple[float, int]:
    total, calls = 0.0, 0
    for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and (path in filename or (path == "~" and filename == "~")):
            total += ct
            calls += nc
    return total, calls


def summarize(path: str, top: int = 0) -> str:
    stats = pstats.Stats(path)
    lines = [f"profile {path} (cProfile inclusive seconds; shares of materialize() total)"]
    grand = _cumtime(stats, "factor_platform/running/execution.py", "materialize")[0] or 1.0

    def walk(nodes: list[Node], depth: int, parent: float | None) -> None:
        listed = 0.0
        for label, frag, name, children in nodes:
            seconds, calls = _cumtime(stats, frag, name)
            listed += seconds
            lines.append(f"  {'  ' * depth}{label}: {seconds:8.1f} s {100 * seconds / grand:5.1f}%  ({calls} calls)")
            if children:
                walk(children, depth + 1, seconds)
        if parent is not None and depth > 0:
            rest = parent - listed
            lines.append(f"  {'  ' * depth}rest: {rest:8.1f} s {100 * rest / grand:5.1f}%")

    walk(TREE, 0, None)
    lines.append("  our code and the database, by concern (inclusive, wherever called):")
    for label, keys in CONCERNS:
        seconds = sum(_cumtime(stats, frag, name)[0] for frag, name in keys)
        calls = sum(_cumtime(stats, frag, name)[1] for frag, name in keys)
        lines.append(f"    {label}: {seconds:8.1f} s {100 * seconds / grand:5.1f}%  ({calls} calls)")
    if top:
        import io

        buffer = io.StringIO()
        pstats.Stats(path, stream=buffer).sort_stats("tottime").print_stats(top)
        lines.append(buffer.getvalue())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# py-spy raw (collapsed) samples: exclusive wall-clock attribution, each sample to ONE category.

# Checked in order against the stack (root first ... leaf last): the first rule whose marker is
# in the stack wins, so put the specific before the general. A marker is "<file fragment>:<function>".
PYSPY_RULES: list[tuple[str, list[str]]] = [
    (
        "ours: reads (Database.read & co)",
        ["storage/database.py:read ", "storage/database.py:max_date_by ", "storage/database.py:count "],
    ),
    (
        "ours: writes (upsert/replace/delete, COPY)",
        [
            "storage/bulk.py:write ",
            "storage/database.py:_delete ",
            "storage/failure_rows.py:record_failures ",
            "storage/failure_rows.py:clear_failures ",
        ],
    ),
    ("ours: commit of our transaction", ["storage/database.py:begin "]),
    ("ours: math (calc/)", ["calc/"]),
    ("ours: sample source", ["sources/"]),
    (
        "ours: other code in asset bodies",
        ["defs/symbols/assets.py:", "defs/portfolios/assets.py:", "layers/portfolio.py:"],
    ),
    ("dagster: check evaluation (all-partition provenance)", ["to_asset_check_evaluation "]),
    ("dagster: event-log write, serialize rows", ["prepare_insert_event_batch ", "prepare_insert_event "]),
    ("dagster: event-log write, asset_event_tags", ["_store_asset_event_tags "]),
    ("dagster: event-log write, other (insert, connect)", ["store_event_batch ", "store_event "]),
    ("dagster: build per-partition materialization events", ["_log_materialization_or_observation_events_for_asset "]),
    ("dagster: data-version provenance", ["_fetch_input_asset_version_info ", "_get_input_provenance_data "]),
    ("dagster: run creation + planned events", ["create_run_for_job "]),
    ("dagster: partition-key ranges (multi x dynamic)", ["get_partition_keys_in_range ", "_key_range_to_subset "]),
    ("planning (plan_materialization)", ["planning/planner.py:plan_materialization "]),
    ("DagsterInstance creation", ["factor_platform/running/instance.py:get_instance "]),
    ("Definitions load", ["runs.py:load_definitions "]),
    ("dagster: other inside runs", ["execute_in_process "]),
    ("other (materialize(), reading failures)", ["execution.py:materialize "]),
]


PYSPY_RATE = 25  # samples per second (bench/build.py start_pyspy)


def summarize_pyspy(path: str, rate: int = PYSPY_RATE) -> str:
    """Shares of the main thread's samples (wall clock, idle included) by PYSPY_RULES."""
    by_thread: dict[str, list[tuple[list[str], int]]] = {}
    with open(path) as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            thread, _, rest = stack.partition(";")
            keyed = []
            for frame in rest.split(";"):  # "Class.func (path/file.py)" -> "path/file.py:func "
                func, _, file = frame.partition(" (")
                keyed.append(f"{file.rstrip(')')}:{func.rsplit('.', 1)[-1]} ")
            by_thread.setdefault(thread.split(":")[0].strip(), []).append((keyed, int(count)))
    # the thread that ran materialize()
    main = max(
        by_thread, key=lambda t: sum(n for keyed, n in by_thread[t] if any(k.endswith(":materialize ") for k in keyed))
    )
    totals: dict[str, int] = {}
    all_samples = 0
    for keyed, count in by_thread[main]:
        all_samples += count
        label = "outside materialize()"
        for name, markers in PYSPY_RULES:
            if any(marker in frame for frame in keyed for marker in markers):
                label = name
                break
        totals[label] = totals.get(label, 0) + count
    lines = [
        f"py-spy {path}: {all_samples} samples (~{all_samples / rate:.0f} s) of {main} (wall clock, idle included), exclusive shares"
    ]
    for label, count in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {label}: {100 * count / all_samples:5.1f}%  (~{count / rate:.1f} s)")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("path", help="a cProfile .prof file, or py-spy raw samples (any other extension)")
    parser.add_argument(
        "--top", type=int, default=0, help="cProfile: also print the N functions with the most own time"
    )
    ns = parser.parse_args()
    print(summarize(ns.path, ns.top) if ns.path.endswith(".prof") else summarize_pyspy(ns.path))
