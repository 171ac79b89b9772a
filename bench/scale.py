"""Scenario `scale` (issue 19): Dagster's cost as a function of the materialized partitions of one
multi-partitioned symbol asset, on a simulated state.

The state, per size N = symbols x sessions (each in its own scratch database and DAGSTER_HOME):

1. 5,000 synthetic symbols (`ZAAA`, ...) registered as dynamic partitions of `symbol`;
   FACTOR_PLATFORM_START_DATE = the first simulated session (the last `sessions` XNYS sessions up to the
   latest closed one), FACTOR_PLATFORM_PARTITION_MONTHS=0 (no window: every session since the start
   date is a date partition).
2. ONE genuine materialization: a no-op asset named `prices` on `factor_platform.defs.partitions.
   symbol_day_partitions`, materialized for (first session, ZAAA) -- a real run, real rows in `runs`,
   `event_logs`, `asset_event_tags` and `asset_keys`.
3. Its ASSET_MATERIALIZATION row of `event_logs` (and its three `asset_event_tags` rows) copied with
   COPY for the other N - 1 keys "YYYY-MM-DD|SYMBOL", session by session (the nightly's order): the
   same JSON with the key, the two dimension tags and the timestamp replaced (+1 ms per event), the
   same run id; `asset_keys.last_materialization` pointed at the last copy; ANALYZE.
   Not simulated: one run per night (every copy carries the genuine run's id) and the runs' planned
   events (only the genuine run's ASSET_MATERIALIZATION_PLANNED exists).

Then, per N:
(a) the UI: `dagster-webserver -m factor_platform.definitions` (the project's definitions) on that
    DAGSTER_HOME, and the two GraphQL queries the UI sends, copied from dagster-webserver 1.13's
    bundled sources (webapp/build/_next/static/chunks/*.js.map):
    - PartitionHealthQuery (ui-core/src/assets/usePartitionHealthData.tsx): an asset's Partitions tab,
      the partition health bar (assetPartitionStatuses ... on MultiPartitionStatuses);
    - AssetGraphLiveQuery (ui-core/src/asset-data/AssetBaseDataProvider.tsx): the asset graph's and
      the asset page's live data, with partitionStats {numMaterialized numPartitions ...} -- the query an
      open page polls every 2 s;
    each cold (the first call after `instance.wipe_asset_cached_status`: Dagster rebuilds its status
    cache from the event log inside the request) and warm (the second call); the webserver's peak RSS
    (VmHWM of /proc/<pid>/status) after them.
(b) the status-cache rebuild alone: `get_and_update_asset_status_cache_value` after a wipe, in a fresh
    process (its time and that process's peak RSS).
(c) the nightly plan's look-up, the platform's `materialized(instance, "prices", keys)` (planning.state
    since issue 19's planner, planning.planner before) for the last 11 sessions x 5,000 symbols
    (`nightly_materialized`: the one place that calls it); beside it, once each, Dagster's two ways to
    answer it: the asset's whole history, and by key.

args (worker): {"mode": "measure", "label", "symbols", "sessions", "universe"} or {"mode": "rebuild"}
(the latter with DAGSTER_HOME etc. in the environment).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from common import (
    MINIMAL_DAGSTER_YAML,
    PLATFORM_DAGSTER_ENV,
    REPO,
    bench_line,
    dagster_home,
    emit,
    log,
    plain_pg_url,
    quiet_warnings,
    run_worker,
    scratch_postgres,
    worker_args,
)

UNIVERSE = 5_000  # symbols registered as dynamic partitions at every size
NIGHTLY_SESSIONS = 11  # the nightly schedule's look-back: the last 10 sessions and today's
ASSET = "prices"
# label -> (symbols, sessions); the labels name the bench lines (scale_<what>_<label>)
SIZES = {
    "10k": (500, 20),  # --quick
    "126k": (500, 252),  # the bench's shape: 500 symbols x 1 year
    "210k": (5_000, 42),  # a 2-month partition window of 5,000 symbols
    "315k": (5_000, 63),  # a 3-month partition window
    "1260k": (5_000, 252),  # 5,000 x 1 year, no window
    "3780k": (5_000, 756),  # 5,000 x 3 years: --full only
}
DEFAULT_SIZES = ["126k", "210k", "315k", "1260k"]
FULL_SIZES = [*DEFAULT_SIZES, "3780k"]
QUICK_SIZES = ["10k"]
# the parts: the UI's queries per size (this file); sensor, checks, nightly plan; the daemon (scale_history.py)
PARTS = ["ui", "history", "daemon"]
# Never above this: a cold status rebuild needs ~5.6 GB at 3.78M and grows linearly (~19 GB at 12.6M).
MAX_PARTITIONS = 3_780_000
GOALS = {  # issue 19
    "ui_warm": 5.0,  # seconds
    "ui_cold": 15.0,
    "webserver_gib": 1.5,
    "nightly_materialized": 1.0,  # per asset: the nightly plans 3 symbol-day assets, "a few seconds" in all
}

PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey
            primaryDimEndKey
            primaryDimStartTime
            primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
              ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
            }
          }
        }
      }
    }
  }
}
"""

ASSET_GRAPH_LIVE_QUERY = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) { id ...AssetNodeLiveFragment }
  assetsLatestInfo(assetKeys: $assetKeys) { id ...AssetLatestInfoFragment }
}
fragment AssetNodeLiveFragment on AssetNode {
  id
  opNames
  repository { id }
  assetKey { path }
  assetMaterializations(limit: 1) { ...AssetNodeLiveMaterialization }
  assetObservations(limit: 1) { ...AssetNodeLiveObservation }
  assetChecksOrError {
    ... on AssetChecks { checks { ...AssetCheckLiveFragment } }
  }
  partitionStats { numMaterialized numMaterializing numPartitions numFailed }
}
fragment AssetNodeLiveMaterialization on MaterializationEvent { timestamp runId stepKey }
fragment AssetNodeLiveObservation on ObservationEvent { timestamp runId stepKey }
fragment AssetCheckLiveFragment on AssetCheck {
  name
  canExecuteIndividually
  executionForLatestMaterialization { id runId status timestamp stepKey evaluation { severity } }
  partitionDefinition { name description }
  partitionStatuses {
    ... on AssetCheckDefaultPartitionStatuses {
      succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions
    }
    ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
    ... on AssetCheckMultiPartitionStatuses {
      primaryDimensionName
      ranges {
        primaryDimStartKey
        primaryDimEndKey
        secondaryDim {
          ... on AssetCheckDefaultPartitionStatuses {
            succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions
          }
          ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
        }
      }
    }
  }
}
fragment AssetLatestInfoFragment on AssetLatestInfo {
  id
  assetKey { path }
  unstartedRunIds
  inProgressRunIds
  latestRun { id ...AssetLatestInfoRun }
}
fragment AssetLatestInfoRun on Run { status startTime endTime id }
"""

# Loads the code location and the asset node (definitions, dynamic partitions), not its statuses.
WARMUP_QUERY = """
query Warmup($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { id partitionDefinition { description } } }
}
"""
LOCATIONS_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


# ------------------------------------------------------------------------------------- the scenario


def scenario(
    *,
    quick: bool,
    full: bool,
    report: Callable[[str], None],
    sizes: list[str] | None = None,
    parts: list[str] | None = None,
) -> None:
    """run.py's `--scenario scale`: one worker per size, its bench lines and human lines; then the
    history part (bench/scale_history.py: daemon, sensor tick, checks, nightly plan)."""
    parts = parts or PARTS
    if "ui" in parts:
        ui_scenario(quick=quick, full=full, report=report, sizes=sizes)
    if {"history", "daemon"} & set(parts):
        from scale_history import scenario as history_scenario

        history_scenario(quick=quick, report=report, measure="history" in parts, daemon="daemon" in parts)


def ui_scenario(*, quick: bool, full: bool, report: Callable[[str], None], sizes: list[str] | None) -> None:
    labels = sizes or (QUICK_SIZES if quick else FULL_SIZES if full else DEFAULT_SIZES)
    unknown = sorted(set(labels) - set(SIZES))
    if unknown:
        raise SystemExit(f"scale: unknown size(s) {unknown}; known: {list(SIZES)}")
    for label in labels:
        symbols, n_sessions = SIZES[label]
        (r,) = run_worker(
            "scale.py",
            {"mode": "measure", "label": label, "symbols": symbols, "sessions": n_sessions, "universe": UNIVERSE},
        )
        n = r["partitions"]
        warm, cold = f"goal_{GOALS['ui_warm']:g}s", f"goal_{GOALS['ui_cold']:g}s"
        report(bench_line(f"scale_ui_partitions_warm_{label}", r["partitions_warm"], warm, GOALS["ui_warm"]))
        report(bench_line(f"scale_ui_partitions_cold_{label}", r["partitions_cold"], cold, GOALS["ui_cold"]))
        report(bench_line(f"scale_ui_counts_warm_{label}", r["counts_warm"], warm, GOALS["ui_warm"]))
        report(bench_line(f"scale_ui_counts_cold_{label}", r["counts_cold"], cold, GOALS["ui_cold"]))
        report(bench_line(f"scale_status_rebuild_{label}", r["rebuild_seconds"], cold, GOALS["ui_cold"]))
        gib = r["webserver_hwm_gib"]
        report(
            bench_line(
                f"scale_webserver_rss_{label}", gib, f"goal_{GOALS['webserver_gib']:g}GiB", GOALS["webserver_gib"]
            )
            + f" rss_gib={gib:.3f}"
        )
        goal = GOALS["nightly_materialized"]
        report(bench_line(f"scale_nightly_materialized_{label}", r["materialized_seconds"], f"goal_{goal:g}s", goal))
        print(
            f"  scale[{label}]: {symbols:,} symbols x {n_sessions} sessions = {n:,} materialized partitions of `{ASSET}` "
            f"({r['first_session']}..{r['last_session']}; {r['universe']:,} symbols registered; Dagster's partitions "
            f"{r['date_partitions']} dates from {r['first_date_partition']} x {r['universe']:,} = {r['num_partitions']:,}); "
            f"state built in {r['build_seconds']:.1f} s (genuine run {r['genuine_seconds']:.1f} s, COPY {r['copy_seconds']:.1f} s "
            f"of {r['event_mb']:,.0f} MB events, ANALYZE {r['analyze_seconds']:.1f} s)"
        )
        print(
            f"  scale[{label}]: UI partitions tab (PartitionHealthQuery) cold {r['partitions_cold']:.2f} s, warm "
            f"{r['partitions_warm']:.2f} s (3rd call {r['partitions_third']:.2f} s), it shows {r['partitions_shown']:,} "
            f"materialized; counts (AssetGraphLiveQuery partitionStats) cold {r['counts_cold']:.2f} s, warm "
            f"{r['counts_warm']:.2f} s (3rd {r['counts_third']:.2f} s), numMaterialized {r['num_materialized']:,} of "
            f"numPartitions {r['num_partitions_shown']:,}; webserver start {r['webserver_start_seconds']:.1f} s"
        )
        print(
            f"  scale[{label}]: the webserver's CPU seconds in those calls: partitions tab cold "
            f"{r['partitions_cold_cpu']:.2f}, warm {r['partitions_warm_cpu']:.2f}, 3rd {r['partitions_third_cpu']:.2f}; "
            f"counts cold {r['counts_cold_cpu']:.2f}, warm {r['counts_warm_cpu']:.2f}, 3rd {r['counts_third_cpu']:.2f}; "
            f"the rebuild's CPU {r['rebuild_cpu']:.2f} s"
        )
        print(
            f"  scale[{label}]: webserver peak RSS {gib:.2f} GiB (VmHWM; after start {r['webserver_start_gib']:.2f} GiB, "
            f"now {r['webserver_rss_gib']:.2f} GiB), its code server {r['code_server_hwm_gib']:.2f} GiB; "
            f"status-cache rebuild {r['rebuild_seconds']:.1f} s in a fresh process (peak RSS {r['rebuild_rss_gib']:.2f} GiB, "
            f"its imports alone {r['rebuild_base_gib']:.2f} GiB; cache {r['cache_mb']:.1f} MB of JSON; "
            f"re-read from the cache {r['cached_read_seconds']:.2f} s); "
            f"webserver and rebuild agree on the partitions definition's id: {r['same_partitions_def_id']}"
        )
        print(
            f"  scale[{label}]: {r['materialized_function']}(instance, {ASSET!r}, {r['nightly_keys']:,} keys = "
            f"{NIGHTLY_SESSIONS} sessions x {r['universe']:,} symbols) -> {r['nightly_found']:,} found: "
            + ", ".join(f"{s:.2f}" for s in r["materialized_calls"])
            + f" s (median reported); Dagster's two look-ups of the same keys: the whole history "
            f"{r['history_read_seconds']:.2f} s, by key {r['by_key_seconds']:.2f} s; load average at the end "
            + " ".join(f"{x:.1f}" for x in r["load_after"])
        )


# ------------------------------------------------------------------------------------- the worker


def symbol_names(n: int) -> list[str]:
    from dagster_floor import symbol_names as names

    return names(n)


def measure(args: dict) -> dict:
    symbols_n, n_sessions, universe_n = args["symbols"], args["sessions"], args.get("universe", UNIVERSE)
    n = symbols_n * n_sessions
    if n > MAX_PARTITIONS:
        raise SystemExit(f"scale: {n:,} partitions: never above {MAX_PARTITIONS:,} (a cold rebuild would not fit)")
    if symbols_n > universe_n:
        raise SystemExit("scale: more symbols than the registered universe")

    os.environ.update(PLATFORM_DAGSTER_ENV)
    os.environ["FACTOR_PLATFORM_PARTITION_MONTHS"] = "0"
    from factor_platform.domain import sessions

    last = sessions.latest_closed_session()
    days = [d.date() for d in sessions.sessions_in_range(sessions.sessions_before(last, n_sessions - 1), last)]
    assert len(days) == n_sessions, (len(days), n_sessions)
    os.environ["FACTOR_PLATFORM_START_DATE"] = days[0].isoformat()
    universe = symbol_names(universe_n)
    symbols = universe[:symbols_n]

    with (
        scratch_postgres("bench_scale") as url,
        dagster_home(MINIMAL_DAGSTER_YAML.format(url=plain_pg_url(url))) as home,
    ):
        os.environ["DAGSTER_HOME"] = str(home)
        os.environ["FACTOR_PLATFORM_DB_URL"] = url  # the definitions' resources (never used here)
        quiet_warnings()
        import dagster as dg

        from factor_platform.defs.partitions import symbol_day_partitions

        instance = dg.DagsterInstance.get()
        try:
            out = {
                "label": args["label"],
                "partitions": n,
                "universe": universe_n,
                "first_session": days[0].isoformat(),
                "last_session": days[-1].isoformat(),
            }
            date_def = next(d.partitions_def for d in symbol_day_partitions.partitions_defs if d.name == "date")
            date_keys = date_def.get_partition_keys()
            out.update(date_partitions=len(date_keys), first_date_partition=date_keys[0])
            out["num_partitions"] = len(date_keys) * universe_n
            if date_keys[0] != days[0].isoformat():
                log(f"  scale[{args['label']}]: WARNING the date partitions start at {date_keys[0]}, not {days[0]}")

            started = time.perf_counter()
            out.update(build_state(instance, url, days, symbols, universe))
            out["build_seconds"] = time.perf_counter() - started
            log(
                f"  scale[{args['label']}]: {n:,} partitions built in {out['build_seconds']:.1f} s "
                f"(COPY {out['copy_seconds']:.1f} s, {out['event_mb']:,.0f} MB)"
            )

            # (b) the status-cache rebuild, cold, in a fresh process (its own peak RSS)
            (rebuilt,) = run_worker("scale.py", {"mode": "rebuild"})
            out.update(rebuilt)
            log(f"  scale[{args['label']}]: status-cache rebuild {out['rebuild_seconds']:.1f} s")
            rebuild_def_id = stored_partitions_def_id(url)

            # (c) the nightly plan's look-up
            keys = [f"{d.isoformat()}|{s}" for d in days[-NIGHTLY_SESSIONS:] for s in universe]
            calls, found = [], set()
            for _ in range(3):
                t = time.perf_counter()
                found = nightly_materialized(instance, keys)
                calls.append(time.perf_counter() - t)
            out.update(lookup_strategies(instance, keys))
            function = platform_materialized()
            out.update(
                materialized_function=f"{function.__module__}.{function.__name__}",
                nightly_keys=len(keys),
                nightly_found=len(found),
                materialized_calls=calls,
                materialized_seconds=sorted(calls)[1],
            )
            log(f"  scale[{args['label']}]: materialized() {calls}")

            # (a) the UI through a running webserver
            out.update(ui(instance, home, url, n, rebuild_def_id))
            out["load_after"] = list(os.getloadavg())
            return out
        finally:
            instance.dispose()


def nightly_materialized(instance, keys: list[str]) -> set[str]:
    """The nightly plan's look-up of one symbol-day asset: the only call of the platform's function
    (planning.state.materialized since issue 19's planner, planning.planner.materialized before)."""
    return platform_materialized()(instance, ASSET, keys)


def platform_materialized() -> Callable:
    try:
        from factor_platform.planning.state import materialized
    except ImportError:
        from factor_platform.planning.planner import materialized
    return materialized


def lookup_strategies(instance, keys: list[str]) -> dict:
    """Dagster's two ways to answer "which of these keys are materialized", timed once each: the
    asset's whole history (get_materialized_partitions, then the intersection) and by key
    (get_latest_storage_id_by_partition over IN lists of 10,000)."""
    import dagster as dg

    key = dg.AssetKey(ASSET)
    t = time.perf_counter()
    history = set(instance.get_materialized_partitions(key)) & set(keys)
    history_seconds = time.perf_counter() - t
    t = time.perf_counter()
    by_key: set[str] = set()
    for i in range(0, len(keys), 10_000):
        by_key.update(
            instance.event_log_storage.get_latest_storage_id_by_partition(
                key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys[i : i + 10_000])
            )
        )
    by_key_seconds = time.perf_counter() - t
    assert history == by_key
    return {"history_read_seconds": history_seconds, "by_key_seconds": by_key_seconds}


# ------------------------------------------------------------------------------------- the state


def noop_asset(name: str = ASSET):
    import dagster as dg

    from factor_platform.defs.partitions import symbol_day_partitions

    def body():
        return None

    body.__annotations__ = {"return": None}  # a real None, not the string `from __future__` leaves
    return dg.asset(name=name, partitions_def=symbol_day_partitions)(body)


def build_state(
    instance,
    url: str,
    days: list[dt.date],
    symbols: list[str],
    universe: list[str],
    assets: tuple[str, ...] = (ASSET,),
) -> dict:
    """The simulated state: one genuine run materializing no-op `assets` for the first key, then each
    asset's event copied for the other keys (days x symbols)."""
    import dagster as dg
    import psycopg2

    out = {}
    instance.add_dynamic_partitions("symbol", universe)
    first_key = f"{days[0].isoformat()}|{symbols[0]}"
    t = time.perf_counter()
    result = dg.materialize(
        [noop_asset(name) for name in assets],
        instance=instance,
        partition_key=first_key,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert result.success
    out["genuine_seconds"] = time.perf_counter() - t

    conn = psycopg2.connect(plain_pg_url(url))
    count = len(days) * len(symbols) - 1
    stats = {"bytes": 0, "copy_seconds": 0.0}
    try:
        for name in assets:
            copy_asset_events(conn, name, days, symbols, first_key, count, stats)
        out["copy_seconds"] = stats["copy_seconds"]
        out["event_mb"] = stats["bytes"] / 1e6

        t = time.perf_counter()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE event_logs")
            cur.execute("ANALYZE asset_event_tags")
            cur.execute("ANALYZE asset_keys")
            cur.execute(
                "SELECT asset_key, count(DISTINCT partition) FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key"
            )
            distinct = dict(cur.fetchall())
        out["analyze_seconds"] = time.perf_counter() - t
        assert distinct == {json.dumps([name]): count + 1 for name in assets}, distinct
    finally:
        conn.close()
    return out


def copy_asset_events(conn, name: str, days, symbols, first_key: str, count: int, stats: dict) -> None:
    """COPY the genuine materialization of asset `name` for the other `count` keys (days x symbols)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition "
            "FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            (json.dumps([name]),),
        )
        (row,) = cur.fetchall()
        event_id, run_id, event, event_type, _, step_key, asset_key, partition = row
        assert partition == first_key, partition
        cur.execute("SELECT key, value FROM asset_event_tags WHERE event_id = %s ORDER BY id", (event_id,))
        tags = cur.fetchall()
        cur.execute("SELECT last_materialization FROM asset_keys WHERE asset_key = %s", (asset_key,))
        (last_record,) = cur.fetchone()
        cur.execute("SELECT max(id) FROM event_logs")
        (max_id,) = cur.fetchone()

    template = EventTemplate(event, days[0].isoformat(), symbols[0])
    keys = ((d.isoformat(), s) for d in days for s in symbols)
    next(keys)  # the genuine one
    base_id = max_id + 1
    # fixed by the genuine event, the rest per row; COPY's text format: tabs separate, no escapes needed
    for text in (event, run_id, step_key, asset_key, *(v for _, v in tags)):
        assert not re.search(r"[\t\n\\]", text), "a field would need COPY escapes"

    t = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.copy_expert(
            "COPY event_logs (id, run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition) FROM STDIN",
            ChunkReader(event_rows(template, keys, base_id, run_id, event_type, step_key, asset_key, stats)),
        )
        keys = ((d.isoformat(), s) for d in days for s in symbols)
        next(keys)
        cur.copy_expert(
            "COPY asset_event_tags (event_id, asset_key, key, value, event_timestamp) FROM STDIN",
            ChunkReader(tag_rows(template, keys, base_id, asset_key, tags)),
        )
        last_id = base_id + count - 1
        cur.execute("SELECT setval(pg_get_serial_sequence('event_logs', 'id'), %s)", (last_id,))
        # the asset's record points at its latest materialization, as Dagster's own write leaves it
        last_day, last_symbol = days[-1].isoformat(), symbols[-1]
        last_event = template.render(last_day, last_symbol, count)
        assert last_record.count(event) == 1 and last_record.count(f'"storage_id": {event_id}}}') == 1
        record = last_record.replace(event, last_event).replace(
            f'"storage_id": {event_id}}}', f'"storage_id": {last_id}}}'
        )
        cur.execute(
            "UPDATE asset_keys SET last_materialization = %s, last_materialization_timestamp = %s, "
            "cached_status_data = NULL WHERE asset_key = %s",
            (record, template.timestamp(count), asset_key),
        )
    stats["copy_seconds"] += time.perf_counter() - t


class EventTemplate:
    """The genuine event's JSON with its partition key, dimension tags and timestamp as holes."""

    def __init__(self, event: str, day: str, symbol: str):
        holes = {
            f'"partition": "{day}|{symbol}"': '"partition": "{day}|{symbol}"',
            f'"dagster/partition/date": "{day}"': '"dagster/partition/date": "{day}"',
            f'"dagster/partition/symbol": "{symbol}"': '"dagster/partition/symbol": "{symbol}"',
        }
        (stamp,) = re.findall(r'"timestamp": ([0-9.]+)', event)
        self.start = float(stamp)
        holes[f'"timestamp": {stamp}'] = '"timestamp": {timestamp}'
        text = event.replace("{", "{{").replace("}", "}}")
        for literal, hole in holes.items():
            assert text.count(literal) == 1, literal
            text = text.replace(literal, hole)
        self.format = text.format

    def timestamp(self, i: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start + i / 1000, dt.UTC).replace(tzinfo=None)

    def render(self, day: str, symbol: str, i: int) -> str:
        return self.format(day=day, symbol=symbol, timestamp=repr(self.start + i / 1000))


def event_rows(template, keys, base_id, run_id, event_type, step_key, asset_key, stats) -> Iterator[str]:
    for i, (day, symbol) in enumerate(keys, start=1):
        line = (
            f"{base_id + i - 1}\t{run_id}\t{template.render(day, symbol, i)}\t{event_type}\t"
            f"{template.timestamp(i).isoformat(sep=' ')}\t{step_key}\t{asset_key}\t{day}|{symbol}\n"
        )
        stats["bytes"] += len(line)
        yield line


def tag_rows(template, keys, base_id, asset_key, tags) -> Iterator[str]:
    for i, (day, symbol) in enumerate(keys, start=1):
        stamp = template.timestamp(i).isoformat(sep=" ")
        values = {"dagster/partition/date": day, "dagster/partition/symbol": symbol}
        yield "".join(
            f"{base_id + i - 1}\t{asset_key}\t{key}\t{values.get(key, value)}\t{stamp}\n" for key, value in tags
        )


class ChunkReader:
    """A file-like object over an iterator of lines, for copy_expert (which calls read(size))."""

    def __init__(self, lines: Iterator[str], lines_per_chunk: int = 5_000):
        self.lines, self.per_chunk, self.buffer = lines, lines_per_chunk, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = "".join(line for _, line in zip(range(self.per_chunk), self.lines, strict=False))
            if not chunk:
                break
            self.buffer += chunk.encode()
        if size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only calls read()
        return self.read(size)


def stored_partitions_def_id(url: str) -> str | None:
    import psycopg2

    conn = psycopg2.connect(plain_pg_url(url))
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT cached_status_data FROM asset_keys WHERE asset_key = %s", (json.dumps([ASSET]),))
            (data,) = cur.fetchone()
        return json.loads(data).get("partitions_def_id") if data else None
    finally:
        conn.close()


# ------------------------------------------------------------------------------------- (b) rebuild


def rebuild() -> dict:
    """In a fresh process: wipe the asset's cached status, rebuild it (timed), read it back (timed)."""
    quiet_warnings()
    import dagster as dg
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    from factor_platform.defs.partitions import symbol_day_partitions

    instance = dg.DagsterInstance.get()
    try:
        key = dg.AssetKey(ASSET)
        instance.get_dynamic_partitions("symbol")
        base = rss_hwm_gib()
        instance.wipe_asset_cached_status([key])
        t, cpu = time.perf_counter(), time.process_time()
        value = get_and_update_asset_status_cache_value(instance, key, symbol_day_partitions)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        size = len(value.serialized_materialized_partition_subset or "")
        t = time.perf_counter()
        again = get_and_update_asset_status_cache_value(instance, key, symbol_day_partitions)
        again.deserialize_materialized_partition_subsets(symbol_day_partitions)
        cached = time.perf_counter() - t
    finally:
        instance.dispose()
    return {
        "rebuild_seconds": seconds,
        "rebuild_cpu": cpu,
        "rebuild_rss_gib": rss_hwm_gib(),
        "rebuild_base_gib": base,
        "cache_mb": size / 1e6,
        "cached_read_seconds": cached,
    }


def rss_hwm_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ------------------------------------------------------------------------------------- (a) the UI


def proc_status_gib(pid: int, field: str) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    (kib,) = re.findall(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(kib) / 2**20


def proc_cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None, timeout: float = 1_800) -> tuple[float, dict]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    t = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    seconds = time.perf_counter() - t
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return seconds, payload["data"]


def ui(instance, home: Path, url: str, n: int, rebuild_def_id: str | None) -> dict:
    import dagster as dg

    key = dg.AssetKey(ASSET)
    port = free_port()
    log_file = open(home / "webserver.log", "w")  # noqa: SIM115 -- closed in finally
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-m",
            "factor_platform.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--suppress-warnings",
        ],
        cwd=REPO,
        env=dict(os.environ),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    code_servers: list[int] = []
    try:
        wait_until_loaded(proc, port, home)
        code_servers = children(proc.pid)
        variables = {"assetKey": {"path": [ASSET]}}
        graphql(port, WARMUP_QUERY, variables)
        out = {
            "webserver_start_seconds": time.perf_counter() - started,
            "webserver_start_gib": proc_status_gib(proc.pid, "VmHWM"),
        }

        def timed(name: str, query: str, variables: dict) -> dict:
            """One call: its wall time, and the webserver's CPU time during it (less sensitive to the
            machine's load than the wall time; Postgres's own time is not in it)."""
            cpu = proc_cpu_seconds(proc.pid)
            out[name], data = graphql(port, query, variables)
            out[name + "_cpu"] = proc_cpu_seconds(proc.pid) - cpu
            return data

        def partitions(name: str) -> dict:
            return timed(name, PARTITION_HEALTH_QUERY, variables)

        def counts(name: str) -> dict:
            return timed(name, ASSET_GRAPH_LIVE_QUERY, {"assetKeys": [{"path": [ASSET]}]})

        instance.wipe_asset_cached_status([key])
        data = partitions("partitions_cold")
        partitions("partitions_warm")
        partitions("partitions_third")
        if "assetPartitionStatuses" not in data["assetNodeOrError"]:
            raise RuntimeError(f"no asset node {ASSET!r} in the webserver: {data}\n{tail(home / 'webserver.log')}")
        out["partitions_shown"] = materialized_shown(data["assetNodeOrError"])
        out["same_partitions_def_id"] = stored_partitions_def_id(url) == rebuild_def_id
        log(f"  scale: partitions tab cold {out['partitions_cold']:.1f} s, warm {out['partitions_warm']:.1f} s")

        instance.wipe_asset_cached_status([key])
        data = counts("counts_cold")
        counts("counts_warm")
        counts("counts_third")
        (node,) = data["assetNodes"]
        out["num_materialized"] = node["partitionStats"]["numMaterialized"]
        out["num_partitions_shown"] = node["partitionStats"]["numPartitions"]
        log(f"  scale: counts cold {out['counts_cold']:.1f} s, warm {out['counts_warm']:.1f} s")
        if out["num_materialized"] != n or out["partitions_shown"] != n:
            log(f"  scale: WARNING the UI shows {out['partitions_shown']:,} / {out['num_materialized']:,}, not {n:,}")

        out["webserver_hwm_gib"] = proc_status_gib(proc.pid, "VmHWM")
        out["webserver_rss_gib"] = proc_status_gib(proc.pid, "VmRSS")
        out["code_server_hwm_gib"] = max((proc_status_gib(c, "VmHWM") for c in code_servers), default=float("nan"))
        return out
    finally:
        stop(proc, code_servers)
        log_file.close()


def wait_until_loaded(proc: subprocess.Popen, port: int, home: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited {proc.returncode}:\n{tail(home / 'webserver.log')}")
        try:
            _, data = graphql(port, LOCATIONS_QUERY, timeout=10)
            entries = data["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except (OSError, RuntimeError, KeyError, TypeError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"dagster-webserver not ready after {timeout:.0f} s:\n{tail(home / 'webserver.log')}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen, code_servers: list[int]) -> None:
    """Stop the webserver we started, then any code server of it still alive (by pid)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in code_servers:
        try:
            os.kill(pid, 0)
        except OSError:
            continue
        time.sleep(2)
        try:
            os.kill(pid, 15)
        except OSError:
            pass


def materialized_shown(node: dict) -> int:
    """Materialized partitions the Partitions tab's health bar shows: per range of the primary dimension
    (the dates), its keys x the secondary keys (symbols) materialized on them."""
    statuses = node["assetPartitionStatuses"]
    primary = statuses["primaryDimensionName"]
    keys = next(d["partitionKeys"] for d in node["partitionKeysByDimension"] if d["name"] == primary)
    position = {k: i for i, k in enumerate(keys)}
    total = 0
    for r in statuses["ranges"]:
        width = position[r["primaryDimEndKey"]] - position[r["primaryDimStartKey"]] + 1
        total += width * len(r["secondaryDim"].get("materializedPartitions") or [])
    return total


def main() -> None:
    args = worker_args()
    if args.get("mode") == "rebuild":
        emit(rebuild())
    else:
        emit(measure(args))


if __name__ == "__main__":
    main()
