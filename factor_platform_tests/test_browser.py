"""The Dagster UI on a real instance, driven by headless Chromium (Playwright).

A fresh DAGSTER_HOME whose dagster.yaml points at a new database on the machine's PostgreSQL, the
`sample` price source, a temp SQLite analytics database and a start date a year back (few partitions).
Seeded with prices for one symbol and the factor ETFs over five sessions, then the webserver serves it,
and the browser:
1. opens the partitions view of `symbol_factor_exposures` (nothing materialized);
2. launches a backfill from the asset's "Materialize…" dialog (one symbol x five sessions), and the daemon
   starts (its backfill loop looks at its start, then every 30 s: started earlier, it would look up to 30 s late);
3. while it runs, sees every asset of both layers on the asset graph;
4. once its runs finished, sees the five partitions materialized;
and the instance and the analytics database must both show those partitions materialized.

Screenshots go to artifacts/browser/ (the README's images are made by scripts/screenshots, one place).

Chromium is Debian's /usr/bin/chromium (never `playwright install`); without it the test skips.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from factor_platform.domain import sessions

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # .venv/bin of the interpreter running the tests
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SYMBOL = "AAPL"
ETFS = ["SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"]
SESSIONS = 5
ASSETS = [  # every phase: symbol layer, reference data, portfolio layer
    "prices",
    "symbol_factor_exposures",
    "symbol_metrics",
    "company_profiles",
    "fundamentals",
    "position_values",
    "portfolio_snapshots",
    "portfolio_sector_weights",
    "portfolio_factor_exposures",
    "portfolio_risk",
    "portfolio_correlations",
    "stress_results",
]
SERVER_START_S = 120  # webserver answering /server_info
BACKFILL_S = 240  # backfill requested -> its runs finished
UI_TIMEOUT_MS = 60_000  # one UI element to appear (the first graph layout is slow on a loaded machine)
STOP_S = 1  # SIGTERM -> SIGKILL (the code server otherwise drains RPCs for up to 60 s; nothing here outlives the test)

INSTANCE_YAML = """\
storage:
  postgres:
    postgres_url: "{url}"
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
nux:
  enabled: false
telemetry:
  enabled: false
"""
# The UI remembers view settings in localStorage: vertical graph with both groups expanded.
UI_STORAGE = {
    "asset-graph-direction": json.dumps("vertical"),
    "asset-graph-open-graph-nodes-global-__GLOBAL__": json.dumps(
        {"expanded": "global@global:symbols,global@global:portfolios"}
    ),
    "communityNux": json.dumps("1"),
}


# ---------------------------------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _ProcessGroups:
    """Processes the test starts, each in a process group of its own (its children included: the code
    server, run workers), output in artifacts/browser/<name>.log; stop() ends them all together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        log = ARTIFACTS / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return proc, log

    def _signal(self, sig: int) -> list[subprocess.Popen]:
        alive = []
        for proc in self.procs:
            proc.poll()  # reap the leader, so a finished group reads as gone
            try:
                os.killpg(proc.pid, sig)
                alive.append(proc)
            except ProcessLookupError:
                pass
        return alive

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, STOP_S), (signal.SIGKILL, 5)):
            deadline = time.monotonic() + wait
            if not self._signal(sig):
                return
            while time.monotonic() < deadline and self._signal(0):
                time.sleep(0.2)


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver did not answer {url}/server_info within {SERVER_START_S} s:\n{_tail(log)}")


def _platform_env(home: Path, analytics_url: str, start: dt.date) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTOR_PLATFORM_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        FACTOR_PLATFORM_PRICE_SOURCE="sample",
        FACTOR_PLATFORM_DB_URL=analytics_url,
        FACTOR_PLATFORM_START_DATE=start.isoformat(),
        PYTHONUNBUFFERED="1",
    )
    return env


def _seed(first: dt.date, last: dt.date, symbols: list[str]) -> None:
    """Run in a subprocess with the test's environment: register the symbols, load their prices.

    Prices only, through Dagster (so `prices` is materialized): the backfill under test computes
    `symbol_factor_exposures` from them. The first run of a symbol fetches a year of lookback.
    """
    import dagster as dg

    from factor_platform.planning.planner import PlannedRun
    from factor_platform.planning.rectangles import Rectangle
    from factor_platform.running.runs import execute_run, load_definitions

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("symbol", symbols)
        run = PlannedRun("symbol_layer_job", ("prices",), Rectangle(first, last, tuple(symbols)))
        result = execute_run(load_definitions(), instance, run)
        if not result.success:
            raise SystemExit(f"seeding prices failed (run {result.run_id})")


def _run_failure(instance, run_id: str) -> str:
    lines = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is not None and event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE"):
            lines.append(f"{event.event_type_value} {event.step_key or ''}: {event.message or ''}")
            error = getattr(event.event_specific_data, "error", None)  # StepFailureData / JobFailureData
            if error is not None:
                lines.append(error.to_string())
    return "\n".join(lines) or "(no failure event)"


def _shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def chromium_path() -> Path:
    pytest.importorskip("playwright", reason="Playwright for Python is a test dependency (pip install -e .[test])")
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing (install Debian's package: apt-get install -y chromium); "
            "this test never downloads a browser with `playwright install`"
        )
    return CHROMIUM


@pytest.fixture
def dagster_ui(tmp_path, postgres_url, monkeypatch):
    """A seeded instance with the webserver running; yields (url, instance, db, first, last, start_daemon)."""
    import dagster as dg

    from factor_platform.storage import Database

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML.format(url=postgres_url))
    analytics_url = f"sqlite:///{tmp_path / 'analytics.db'}"
    last = sessions.latest_closed_session()
    first = sessions.sessions_before(last, SESSIONS - 1)
    env = _platform_env(home, analytics_url, start=last - dt.timedelta(days=365))
    db = Database(analytics_url)
    db.init_schema()  # once, before three processes would race to create it

    module = ["-m", "factor_platform.definitions"]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    groups = _ProcessGroups()
    try:
        # The two start together: each spends most of its time importing the platform.
        seed, seed_log = groups.start(
            "seed",
            [
                sys.executable,
                "-m",
                "factor_platform_tests.test_browser",
                "seed",
                first.isoformat(),
                last.isoformat(),
                SYMBOL,
                *ETFS,
            ],
            env,
        )
        web, web_log = groups.start(
            "webserver", [str(BIN / "dagster-webserver"), *module, "-h", "127.0.0.1", "-p", str(port)], env
        )
        try:
            seed.wait(timeout=SERVER_START_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"seeding did not finish within {SERVER_START_S} s:\n{_tail(seed_log)}")
        assert seed.returncode == 0, f"seeding failed:\n{_tail(seed_log)}"
        _wait_for_server(url, web, web_log)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.get() as instance:
            yield (
                url,
                instance,
                db,
                first,
                last,
                lambda: groups.start("daemon", [str(BIN / "dagster-daemon"), "run", *module], env),
            )
    finally:
        groups.stop()
        db.dispose()


# ---------------------------------------------------------------------------------------------- the test
def test_asset_graph_partitions_and_a_backfill_from_the_ui(chromium_path, dagster_ui):
    import dagster as dg
    from playwright.sync_api import expect, sync_playwright

    from factor_platform.domain.factor_models import factor_names, load_regressions

    url, instance, db, first, last, start_daemon = dagster_ui
    days = [d.date() for d in sessions.sessions_in_range(first, last)]
    assert len(days) == SESSIONS
    target = {f"{d.isoformat()}|{SYMBOL}" for d in days}
    asset = dg.AssetKey("symbol_factor_exposures")
    assert not instance.get_materialized_partitions(asset)
    assert instance.get_materialized_partitions(dg.AssetKey("prices")) >= target  # seeded

    def visible(locator) -> None:
        expect(locator).to_be_visible(timeout=UI_TIMEOUT_MS)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.add_init_script(
                "".join(
                    f"window.localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in UI_STORAGE.items()
                )
            )
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)

            # 1. The partitions view of symbol_factor_exposures: nothing materialized yet.
            page.goto(f"{url}/assets/symbol_factor_exposures?view=partitions")
            visible(page.get_by_text(re.compile(r"^Missing \(\d")))
            visible(page.get_by_text("Materialized (0)"))
            visible(page.get_by_text(SYMBOL, exact=True).first)
            page.get_by_role("button", name="Hide navigation").click()  # remembered for the next pages
            _shot(page, "partitions-before")

            # 2. A backfill from the UI: Materialize… -> a date range and one symbol -> Launch backfill.
            page.get_by_role("button", name="Materialize…").click()
            dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
            visible(dialog)
            dates = dialog.locator("input[placeholder^='ex:']")
            dates.fill(f"[{first.isoformat()}...{last.isoformat()}]")
            dates.press("Enter")
            dialog.get_by_text("Select a partition or create one").click()
            page.get_by_role("menuitem").filter(has_text=SYMBOL).first.click()  # no ETF's name contains it
            dialog.get_by_text("Launch runs to materialize").click()  # closes the symbol menu
            visible(dialog.get_by_text(f"{SESSIONS} partitions", exact=True))
            expect(page.get_by_role("menuitem")).to_have_count(0, timeout=UI_TIMEOUT_MS)
            _shot(page, "launch-backfill")
            dialog.get_by_role("button", name="Launch backfill").click()
            visible(page.get_by_text(re.compile(r"Created backfill")))
            start_daemon()
            launched = time.monotonic()
            backfills = instance.get_backfills()
            assert len(backfills) == 1, backfills
            backfill_id = backfills[0].backfill_id
            visible(page.get_by_text(backfill_id).first)  # the toast names it

            # 3. While it runs: the asset graph, both groups expanded, shows every phase's asset.
            page.set_viewport_size({"width": 2200, "height": 1000})
            page.goto(f"{url}/asset-groups")
            visible(page.get_by_text("stress_results", exact=True).first)
            page.locator("button:left-of(:text('Search and filter assets'))").first.click()  # hide the explorer
            page.mouse.dblclick(2200 - 150, 140)  # double-click on the background: zoom to fit
            page.wait_for_timeout(1500)
            for name in ASSETS:
                visible(page.get_by_text(name, exact=True).filter(visible=True).first)
            _shot(page, "asset-graph")

            # 4. Wait (bounded) for the backfill's runs to finish.
            finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
            runs = []
            while time.monotonic() - launched < BACKFILL_S:
                runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
                if runs and all(r.status in finished for r in runs):
                    break
                time.sleep(0.5)
            else:
                backfill = instance.get_backfill(backfill_id)
                pytest.fail(
                    f"backfill {backfill_id} ({backfill.status if backfill else 'unknown'}) not finished after "
                    f"{BACKFILL_S} s; runs: {[(r.run_id[:8], r.status.value) for r in runs]}\n"
                    f"daemon log:\n{_tail(ARTIFACTS / 'daemon.log')}"
                )
            failed = [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
            assert not failed, "\n\n".join(
                f"run {r.run_id} {r.status.value}:\n{_run_failure(instance, r.run_id)}" for r in failed
            )

            # 5. The partitions view again: the five partitions materialized, the latest one opened.
            page.set_viewport_size({"width": 1600, "height": 1000})
            page.goto(f"{url}/assets/symbol_factor_exposures?view=partitions")
            visible(page.get_by_text(f"Materialized ({SESSIONS})"))
            page.get_by_text(last.isoformat(), exact=True).first.click()
            page.get_by_text(SYMBOL, exact=True).first.click()
            visible(page.get_by_text(f"{last.isoformat()}|{SYMBOL}").first)
            visible(page.get_by_text("rows_written").first)
            _shot(page, "partitions")
        finally:
            browser.close()

    # The backfill ran the rectangle chosen in the dialog, and nothing else.
    assert [
        (r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end"))
        for r in runs
    ] == [(f"{first.isoformat()}|{SYMBOL}", f"{last.isoformat()}|{SYMBOL}")]
    # The instance and the analytics database agree that its five partitions were materialized.
    assert target <= instance.get_materialized_partitions(asset)
    rows = db.read("symbol_factor_exposures", {"symbol": SYMBOL, "date": (first, last)})
    assert sorted(rows["date"].dt.date.unique()) == days
    expected_factors = set(factor_names(load_regressions()))
    for day, group in rows.groupby("date"):
        assert set(group["factor"]) == expected_factors, f"{day:%Y-%m-%d}: factors {sorted(group['factor'])}"
    assert rows[["beta", "r_squared", "n_obs"]].notna().all().all()


def test_report_renders_offline_in_chromium(chromium_path, sqlite_url, tmp_path):
    """The HTML report in a real browser: no request leaves the file, every chart decodes."""
    from playwright.sync_api import sync_playwright

    from factor_platform.app.report import write_report
    from factor_platform.storage import Database
    from factor_platform_tests.test_report import PID, seed

    db = Database(sqlite_url)
    db.init_schema()
    seed(db)
    path = write_report(db, portfolio_id=PID, output=tmp_path / "report.html")
    db.dispose()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            decoded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            assert decoded == [True] * 4
            assert page.locator("script").count() == 0
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert [r for r in requests if not r.startswith(("file:", "data:"))] == []


if __name__ == "__main__":  # python -m factor_platform_tests.test_browser seed FIRST LAST SYMBOL...
    if len(sys.argv) >= 5 and sys.argv[1] == "seed":
        _seed(dt.date.fromisoformat(sys.argv[2]), dt.date.fromisoformat(sys.argv[3]), sys.argv[4:])
    else:
        raise SystemExit(__doc__)
