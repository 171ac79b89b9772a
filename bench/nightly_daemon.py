"""Worker: the nightly end to end through dagster-daemon (schedule -> symbol layer -> sensor -> portfolios).

`nightly_wide` times the nightly as one materialize(); the platform's real nightly is `nightly_schedule`'s
symbol-layer runs, queued and launched by the daemon -- at this size in waves, a run per core: the prices
from the schedule, the betas and metrics from `portfolio_sensor` once the prices runs have succeeded --
then the sensor's portfolio runs (a block of portfolios per core) once those have ended.

1. untimed — nightly_wide's "first night" (`first_night`): portfolios imported (incepted on the previous
   session), the symbol layer materialized over the schedule's catch-up range (the CATCH_UP_SESSIONS
   sessions before the latest: what a deployment that ran every night has), the portfolios over the
   previous session (scratch Postgres analytics DB and Dagster instance).
   Then `dagster-daemon run -m factor_platform.definitions` on the platform's instance config
   (QueuedRunCoordinator, dequeue every 1 s), ready once every required daemon has a heartbeat and
   `portfolio_sensor` has finished a tick (its code server is loaded) and nothing is running.
   `archive_schedule` and `checks_schedule` are stopped, so that a bench that straddles 17:00 or
   20:30 New York times the nightly alone.
2. timed — the nightly as the daemon fires it at 18:00 New York on the latest closed session: this
   process loads the same code location (its own code server), evaluates `nightly_schedule` for that
   scheduled time through it and submits the run request with the scheduler daemon's own function
   (`dagster._scheduler.scheduler._submit_run_request`: the same tags, run key and origin; queued ->
   the daemon launches it). Waited for: the symbol run and every run created after it have ended and
   every portfolio has its latest session's snapshot. The daemon's clock is not touched: its
   scheduler would fire this only at 18:00 (and finds the run by its tags if it does).

Reported from the instance's records: the schedule's evaluation, the symbol run's queue (enqueued ->
launch), launch (-> its process started) and run; the sensor's wait (symbol run ended -> portfolio runs
created) and that tick's duration; each portfolio run's launch and duration; the daemon's sensor ticks
during the nightly; CPU and peak RSS of the daemon's process tree by role (sampled while polling); and
`machine_reference_s`, a fixed CPU workload (common.machine_reference_s) timed before the nightly (the
daemon idle) and after it (the daemon stopped): the same nightly has measured 57 and 82 s an hour apart
on this shared machine.

args: {"symbols", "portfolios", "analytics": "postgres", "label", "timeout": seconds (default 1800),
       "pyspy": null | path (py-spy of the daemon's process tree while the nightly runs)}
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from build import platform_environment, start_pyspy, stop_pyspy
from common import emit, log, machine_reference_s, worker_args
from nightly_wide import first_night

LOCATION_MODULE = "factor_platform.definitions"  # as `dagster-daemon run -m` names the location
NIGHTLY = "nightly_schedule"
SENSOR = "portfolio_sensor"
OTHER_SCHEDULES = ("archive_schedule", "checks_schedule")
NIGHTLY_AT = dt.time(18, 0)
NIGHTLY_TZ = "America/New_York"
POLL_S = 0.25
READY_TIMEOUT_S = 300


def main() -> None:
    args = worker_args()
    with platform_environment(args.get("analytics", "postgres")) as home:
        run(args, home)


def run(args: dict, home: Path) -> None:
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    label = args["label"]
    from factor_platform.defs.schedules import CATCH_UP_SESSIONS

    # The schedule computes every missing session of its catch-up range: a night after the first
    # night of bench/nightly_wide (one session) would catch 9 sessions up, not measure a nightly.
    night = first_night(args, home, "nightly_daemon", symbol_sessions=CATCH_UP_SESSIONS)
    instance = dg.DagsterInstance.get()
    with contextlib.ExitStack() as stack:
        stack.callback(instance.dispose)
        workspace = stack.enter_context(
            WorkspaceProcessContext(instance, ModuleTarget(LOCATION_MODULE, None, None, None))
        )
        (location,) = workspace.create_request_context().code_locations
        (repo,) = location.get_repositories().values()
        for name in OTHER_SCHEDULES:
            schedule = repo.get_schedule(name)
            instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)
        sensor = repo.get_sensor(SENSOR)

        started = time.time()
        daemon = stack.enter_context(running_daemon(home))
        _ready(instance, sensor, started)
        log(f"  nightly_daemon[{label}]: daemon ready in {time.time() - started:.1f} s (pid {daemon.pid})")

        reference_before = machine_reference_s()
        cpu = TreeCpu(daemon.pid)
        if args.get("pyspy"):  # the daemon, its code server and the runs it launches
            stack.callback(stop_pyspy, start_pyspy(args["pyspy"], pid=daemon.pid))
        fired = time.time()
        symbol_runs = fire_nightly(workspace, location, repo.get_schedule(NIGHTLY), night.latest)
        symbol_run = symbol_runs[0]
        submitted = time.time()
        log(
            f"  nightly_daemon[{label}]: {NIGHTLY} for {night.latest} {NIGHTLY_AT:%H:%M} {NIGHTLY_TZ} evaluated and "
            f"submitted in {submitted - fired:.1f} s: {len(symbol_runs)} run(s) {[r.run_id for r in symbol_runs]}"
        )
        records = _wait_nightly(
            instance, night, symbol_run.run_id, fired, cpu, timeout=args.get("timeout", 1800), label=label
        )
        result = _report(instance, night, sensor, records, symbol_run.run_id, fired, submitted)
        result["cpu_seconds"], result["peak_gib"] = cpu.seconds(), cpu.peak_gib()
    result["machine_reference_s"] = [reference_before, machine_reference_s()]  # the daemon stopped
    log(
        f"  nightly_daemon[{label}]: {result['seconds']:.1f} s fire -> last run ended = evaluation {result['evaluation_s']:.1f} "
        f"+ symbol layer {result['symbol_layer_s']:.1f} s ({result['symbol_runs']} runs: "
        + ", ".join(
            f"{r['wave']} created +{r['created_s']:.1f} launch {r['launch_s']:.1f} + run {r['run_s']:.1f} s"
            for r in result["symbol_run_detail"]
        )
        + ") "
        f"+ sensor wait {result['sensor_wait_s']:.1f} + portfolio runs {result['portfolio_layer_s']:.1f} s "
        f"({result['portfolio_runs']} runs: "
        + ", ".join(
            f"{r['portfolios']} portfolios launch {r['launch_s']:.1f} + run {r['run_s']:.1f} s"
            for r in result["portfolio_run_detail"]
        )
        + f"); sensor ticks {result['sensor_ticks']} (median {result['sensor_tick_median_s']:.2f} s, "
        f"max {result['sensor_tick_max_s']:.2f} s); CPU {result['cpu_seconds']}; failures {result['failures']}; "
        f"machine reference before / after {result['machine_reference_s']} s"
    )
    emit(result)


# ------------------------------------------------------------------------------------------ daemon


@contextlib.contextmanager
def running_daemon(home: Path):
    """`dagster-daemon run` on the platform's code location, in its own process group; stopped on
    exit (SIGTERM, then SIGKILL of the group and of any descendant that left it). On an error, the
    tail of its log goes to stderr (DAGSTER_HOME is removed afterwards)."""
    import psutil

    bin_dir = Path(sys.executable).parent
    with open(home / "daemon.log", "w") as daemon_log:
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-m", LOCATION_MODULE],
            stdout=daemon_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield daemon
        except BaseException:
            lines = (home / "daemon.log").read_text(errors="replace").splitlines()
            log("  dagster-daemon's log, last 40 lines:\n" + "\n".join(lines[-40:]))
            raise
        finally:
            try:
                family = psutil.Process(daemon.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                family = []
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
            _, alive = psutil.wait_procs(family, timeout=10)
            for proc in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()


def _ready(instance, sensor, since: float) -> None:
    """Every required daemon has a heartbeat since `since`, the sensor has finished a tick (the daemon's
    code server answers) and no run is queued or running."""
    import dagster as dg

    from factor_platform.defs.portfolios.sensors import IN_FLIGHT

    def ready() -> bool:
        beats = instance.get_daemon_heartbeats()
        if any(t not in beats or beats[t].timestamp < since for t in instance.get_required_daemon_types()):
            return False
        ticks = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, after=since, limit=5)
        if not any(t.end_timestamp for t in ticks):
            return False
        return not instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT), limit=1)

    _wait("daemon ready", ready, READY_TIMEOUT_S)


def _wait(what: str, done, timeout: float, on_poll=None) -> None:
    started = time.time()
    while time.time() - started < timeout:
        if on_poll:
            on_poll()
        if done():
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"{what}: not done after {timeout:.0f} s")


class TreeCpu:
    """CPU seconds and peak RSS of the daemon's process tree by role (daemon, code server, runs, other:
    the runs' compute-log tails), from psutil samples taken while waiting: a process that starts and
    ends between two samples is missed, a run's last ~POLL_S of CPU too."""

    def __init__(self, root_pid: int) -> None:
        import psutil

        self._root = psutil.Process(root_pid)
        self._base: dict[int, float] = {}  # CPU already spent before the nightly
        self._cpu: dict[int, float] = {}
        self._role: dict[int, str] = {}
        self._rss: dict[str, int] = {}
        for proc, cpu, _ in self._procs():
            self._base[proc.pid] = cpu
        self.sample()

    def _procs(self):
        import psutil

        for proc in [self._root, *self._root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times, rss = proc.cpu_times(), proc.memory_info().rss
                cmdline = " ".join(proc.cmdline())  # empty once the process is a zombie: keep its role
                if cmdline:
                    self._role[proc.pid] = _role(cmdline)
                yield proc, times.user + times.system, rss

    def sample(self) -> None:
        for proc, cpu, rss in self._procs():
            self._cpu[proc.pid] = cpu - self._base.get(proc.pid, 0.0)
            role = self._role.get(proc.pid, "other")
            self._rss[role] = max(self._rss.get(role, 0), rss)

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, cpu in self._cpu.items():
            role = self._role.get(pid, "other")
            out[role] = round(out.get(role, 0.0) + cpu, 1)
        return out

    def peak_gib(self) -> dict[str, float]:
        return {role: round(rss / 1024**3, 2) for role, rss in self._rss.items()}


def _role(cmdline: str) -> str:
    """The code server starts each run as a multiprocessing "spawn" child of itself."""
    if "spawn_main" in cmdline:
        return "runs"
    if " grpc" in cmdline:
        return "code_server"
    return "daemon" if "dagster-daemon" in cmdline else "other"


# ------------------------------------------------------------------------------------------ nightly


def fire_nightly(workspace, location, schedule, day: dt.date):
    """What the scheduler daemon does at `day` 18:00 New York: evaluate the schedule on the code
    server, then create and submit each run request (queued: the run daemon launches it)."""
    from zoneinfo import ZoneInfo

    from dagster._core.definitions.timestamp import TimestampWithTimezone
    from dagster._scheduler.scheduler import _submit_run_request

    when = dt.datetime.combine(day, NIGHTLY_AT, tzinfo=ZoneInfo(NIGHTLY_TZ))
    data = location.get_schedule_execution_data(
        instance=workspace.instance,
        repository_handle=schedule.handle.repository_handle,
        schedule_name=schedule.name,
        scheduled_execution_time=TimestampWithTimezone(when.timestamp(), NIGHTLY_TZ),
        log_key=None,
    )
    if data.skip_message or not data.run_requests:
        raise RuntimeError(f"{schedule.name} at {when}: {data.skip_message or 'no run requested'}")

    def submit(request):
        return _submit_run_request(request, workspace, schedule, when, logging.getLogger("nightly_daemon"), None)

    # one run, or the prices wave of a large nightly (a run per core): in threads when the instance's
    # `schedules: num_submit_workers` says so, as the scheduler daemon does
    workers = workspace.instance.get_settings("schedules").get("num_submit_workers")
    with ThreadPoolExecutor(max_workers=workers or 1) as pool:
        results = list(pool.map(submit, data.run_requests))
    for result in results:
        if result.error_info:
            raise RuntimeError(f"{schedule.name}: submit failed: {result.error_info.to_string()}")
    return [result.submitted_run for result in results]


def _wait_nightly(instance, night, symbol_run_id: str, fired: float, cpu: TreeCpu, *, timeout: float, label: str):
    """Records of every run created since `fired`, once the symbol run and every later run have ended
    and every portfolio has the latest session's snapshot (or a portfolio run failed)."""
    import dagster as dg

    from factor_platform.defs.portfolios.sensors import FINISHED
    from factor_platform.layers.names import PORTFOLIO_LAYER_JOB

    after = dt.datetime.fromtimestamp(fired, tz=dt.UTC) - dt.timedelta(seconds=1)
    records: list = []
    reported: set[str] = set()

    def done() -> bool:
        records[:] = instance.get_run_records(filters=dg.RunsFilter(created_after=after))
        for r in records:
            if r.dagster_run.run_id not in reported:
                reported.add(r.dagster_run.run_id)
                log(f"  nightly_daemon[{label}]: +{time.time() - fired:.1f} s run {r.dagster_run.job_name} created")
        by_id = {r.dagster_run.run_id: r.dagster_run for r in records}
        symbol = by_id.get(symbol_run_id)
        if symbol is None or symbol.status not in FINISHED:
            return False
        if symbol.status != dg.DagsterRunStatus.SUCCESS:
            failures = instance.all_logs(
                symbol_run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
            )
            why = "; ".join(str(e.dagster_event.event_specific_data)[:2000] for e in failures if e.dagster_event)
            raise RuntimeError(f"the nightly's symbol run {symbol_run_id} ended {symbol.status.value}: {why}")
        if any(run.status not in FINISHED for run in by_id.values()):
            return False
        portfolio_runs = [run for run in by_id.values() if run.job_name == PORTFOLIO_LAYER_JOB]
        if any(run.status != dg.DagsterRunStatus.SUCCESS for run in portfolio_runs):
            return True  # the sensor does not ask again for a failed run's key: reported as failures
        return _snapshotted(night) == len(night.portfolios)

    _wait("the nightly", done, timeout, on_poll=cpu.sample)
    return records


def _snapshotted(night) -> int:
    """Portfolios with a snapshot of the latest session."""
    import sqlalchemy as sa

    query = sa.text("SELECT count(DISTINCT portfolio_id) FROM portfolio_snapshots WHERE date = :day")
    with night.db.engine.connect() as conn:
        return conn.execute(query, {"day": night.latest}).scalar()


def _report(instance, night, sensor, records, symbol_run_id: str, fired: float, submitted: float) -> dict:
    import dagster as dg

    from factor_platform.layers.names import PORTFOLIO_LAYER_JOB, SYMBOL_LAYER_JOB, WAVE_TAG
    from factor_platform.planning.rectangles import RANGE_END_TAG, RANGE_START_TAG

    Event = dg.DagsterEventType
    order = {key: i for i, key in enumerate(instance.get_dynamic_partitions("portfolio"))}

    def times(record) -> dict[str, float]:
        run = record.dagster_run
        events = {
            e.dagster_event.event_type: e.timestamp
            for e in instance.all_logs(run.run_id, of_type={Event.RUN_ENQUEUED, Event.RUN_STARTING})
        }
        return {
            "created": record.create_timestamp.timestamp(),
            "enqueued": events.get(Event.RUN_ENQUEUED, float("nan")),
            "launched": events.get(Event.RUN_STARTING, float("nan")),
            "started": record.start_time or float("nan"),
            "ended": record.end_time or float("nan"),
        }

    def portfolios_in(run) -> int:
        lo, hi = (run.tags.get(tag, "").split("|")[-1] for tag in (RANGE_START_TAG, RANGE_END_TAG))
        return order[hi] - order[lo] + 1 if lo in order and hi in order else 0

    by_id = {r.dagster_run.run_id: r for r in records}
    symbol = times(by_id[symbol_run_id])
    symbol_records = sorted(
        (r for r in records if r.dagster_run.job_name == SYMBOL_LAYER_JOB), key=lambda r: r.create_timestamp
    )
    symbol_times = [times(r) for r in symbol_records]
    symbol_end = max(t["ended"] for t in symbol_times)
    portfolio_records = sorted(
        (r for r in records if r.dagster_run.job_name == PORTFOLIO_LAYER_JOB), key=lambda r: r.create_timestamp
    )
    portfolio_times = [times(r) for r in portfolio_records]
    other = sorted(
        r.dagster_run.job_name for r in records if r.dagster_run.job_name not in (SYMBOL_LAYER_JOB, PORTFOLIO_LAYER_JOB)
    )
    last_end = max(t["ended"] for t in [*symbol_times, *portfolio_times])
    ticks = [
        t for t in instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, after=fired) if t.end_timestamp
    ]
    portfolio_ids = {r.dagster_run.run_id for r in portfolio_records}
    creating = [t for t in ticks if portfolio_ids & set(t.run_ids)]
    durations = [t.end_timestamp - t.timestamp for t in ticks]
    failed = [r for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
    snapshotted = _snapshotted(night)
    first_created = min((t["created"] for t in portfolio_times), default=float("nan"))
    return {
        "scenario": "nightly_daemon_5000",
        "seconds": last_end - fired,
        "submit_to_end_s": last_end - submitted,
        "evaluation_s": submitted - fired,
        "symbol_queue_s": symbol["launched"] - symbol["enqueued"],
        "symbol_launch_s": symbol["started"] - symbol["launched"],
        "symbol_run_s": symbol["ended"] - symbol["started"],
        "symbol_layer_s": symbol_end - submitted,
        "symbol_runs": len(symbol_records),
        "symbol_run_detail": [
            {
                "wave": r.dagster_run.tags.get(WAVE_TAG, "one run"),
                "created_s": t["created"] - submitted,
                "queue_s": t["launched"] - t["enqueued"],
                "launch_s": t["started"] - t["launched"],
                "run_s": t["ended"] - t["started"],
            }
            for r, t in zip(symbol_records, symbol_times, strict=True)
        ],
        "sensor_wait_s": first_created - symbol_end,
        "sensor_tick_s": (creating[0].end_timestamp - creating[0].timestamp) if creating else None,
        "portfolio_layer_s": last_end - first_created,
        "portfolio_runs": len(portfolio_records),
        "portfolio_run_detail": [
            {
                "portfolios": portfolios_in(r.dagster_run),
                "queue_s": t["launched"] - t["enqueued"],
                "launch_s": t["started"] - t["launched"],
                "run_s": t["ended"] - t["started"],
            }
            for r, t in zip(portfolio_records, portfolio_times, strict=True)
        ],
        "other_runs": other,
        "sensor_ticks": len(ticks),
        "sensor_tick_median_s": statistics.median(durations) if durations else 0.0,
        "sensor_tick_max_s": max(durations, default=0.0),
        "failures": len(failed),
        "failed_runs": [f"{r.dagster_run.job_name} {r.dagster_run.run_id}" for r in failed],
        "missing_snapshots": len(night.portfolios) - snapshotted,
        "symbols": len(night.universe),
        "symbol_keys": len(instance.get_dynamic_partitions("symbol")),
        "portfolios": len(night.portfolios),
        "session": str(night.latest),
    }


if __name__ == "__main__":
    main()
