"""A long materialize's progress: the counts behind the lines (`running.progress.Progress`) and their
rendering (`app.progress`): plain lines off a terminal, a rich bar on one."""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from rich.console import Console

from factor_platform.app.cli import main
from factor_platform.app.progress import BarProgress, PlainProgress, Tally, progress_display
from factor_platform.planning.planner import PlannedRun
from factor_platform.planning.rectangles import Rectangle
from factor_platform.running.progress import Lines, Progress, as_progress
from factor_platform.running.runs import ChunkOutcome, run_chunk_waves
from factor_platform_tests.defs.conftest import TEST_END
from factor_platform_tests.defs.test_cli import cli_env  # noqa: F401 (a fixture)

COUNTS = re.compile(r"([\d,]+)/([\d,]+) partitions")


def clock_of(*times: float):
    """A clock that reads `times`, one per call, and fails loudly when read once too often."""
    readings = iter(times)
    return lambda: next(readings)


class Recorded:
    """A `Progress` that keeps what it is told, in order."""

    def __init__(self):
        self.events: list[tuple] = []

    def __call__(self, line):
        self.events.append(("line", line))

    def planned(self, partitions, line):
        self.events.append(("planned", partitions, line))

    def finished(self, partitions, line):
        self.events.append(("finished", partitions, line))


def last_counts(text: str) -> tuple[int, int]:
    done, total = COUNTS.findall(text)[-1]
    return int(done.replace(",", "")), int(total.replace(",", ""))


# ------------------------------------------------------------------------------------ accounting
def test_a_second_plan_pass_adds_to_the_total_and_the_rate_runs_from_the_first_plan():
    tally = Tally(clock_of(100.0))  # the first plan starts the clock
    tally.plan(1_000)
    tally.finish(400)
    assert (tally.rate(104.0), tally.eta(104.0)) == (100.0, 6.0)  # 400 in 4 s; 600 left
    tally.plan(200)  # the source changed data: the second pass recomputes 200 more
    tally.finish(600)
    assert (tally.total, tally.done) == (1_200, 1_000)
    assert tally.rate(110.0) == 100.0 and tally.eta(110.0) == 2.0
    tally.finish(200)
    assert tally.eta(112.0) == 0.0


def test_no_rate_nor_eta_before_a_run_has_finished():
    tally = Tally(clock_of(5.0, 5.0, 9.0))
    tally.plan(300)
    assert tally.rate(5.0) is None and tally.eta(5.0) is None
    assert tally.text() == "0/300 partitions"  # read at 5.0: nothing done, no rate
    tally.finish(100)
    assert tally.text() == "100/300 partitions, 25.0/s, ETA 0:00:08"  # 100 in 4 s; 200 left at 25/s


def test_plain_lines_are_todays_lines_with_the_counts_appended():
    out = io.StringIO()
    display = PlainProgress(out, clock=clock_of(0.0, 0.0, 2.0, 4.0, 5.0, 10.0))
    display("end 2025-07-05 is after the latest closed session 2025-07-03; using 2025-07-03")
    display.planned(3_000, "plan: 1 symbol run(s), 0 reference run(s), 0 portfolio run(s)")
    display.finished(1_000, "[1/2] symbols 2025-06-02..2025-06-30 x 100 [prices]: 1000 partitions, 2.0 s, ok")
    display.finished(2_000, "[2/2] symbols 2025-06-02..2025-06-30 x 100 [symbol_metrics]: 2000 partitions, 2.0 s, ok")
    display.planned(
        500,
        "plan (again: the source changed data already computed): 1 symbol run(s), 0 reference run(s), "
        "0 portfolio run(s)",
    )
    display.finished(500, "[1/1] symbols 2025-06-30..2025-06-30 x 100 [prices]: 500 partitions, 1.0 s, FAILED")
    assert out.getvalue().splitlines() == [
        "end 2025-07-05 is after the latest closed session 2025-07-03; using 2025-07-03",
        "plan: 1 symbol run(s), 0 reference run(s), 0 portfolio run(s) | 0/3,000 partitions",
        "[1/2] symbols 2025-06-02..2025-06-30 x 100 [prices]: 1000 partitions, 2.0 s, ok"
        " | 1,000/3,000 partitions, 500.0/s, ETA 0:00:04",
        "[2/2] symbols 2025-06-02..2025-06-30 x 100 [symbol_metrics]: 2000 partitions, 2.0 s, ok"
        " | 3,000/3,000 partitions, 750.0/s, ETA 0:00:00",
        "plan (again: the source changed data already computed): 1 symbol run(s), 0 reference run(s), 0 portfolio run(s)"
        " | 3,000/3,500 partitions, 600.0/s, ETA 0:00:01",
        "[1/1] symbols 2025-06-30..2025-06-30 x 100 [prices]: 500 partitions, 1.0 s, FAILED"
        " | 3,500/3,500 partitions, 350.0/s, ETA 0:00:00",
    ]


def test_a_line_callback_still_gets_exactly_its_lines():
    lines: list[str] = []
    progress = as_progress(lines.append)
    assert isinstance(progress, Lines) and not isinstance(lines.append, Progress)
    progress("note")
    progress.planned(10, "plan: ...")
    progress.finished(10, "[1/1] ...: 10 partitions, 0.1 s, ok")
    assert lines == ["note", "plan: ...", "[1/1] ...: 10 partitions, 0.1 s, ok"]
    as_progress(None).finished(10, "nobody listens")  # no callback: nothing, and no error
    recorded = Recorded()
    assert as_progress(recorded) is recorded


class SignalsAFinish(Recorded):
    """`Recorded`, and an event set when a run of `partitions` is reported finished."""

    def __init__(self, partitions: int):
        super().__init__()
        self.partitions = partitions
        self.seen = threading.Event()

    def finished(self, partitions, line):
        super().finished(partitions, line)
        if partitions == self.partitions:
            self.seen.set()


def test_chunk_runs_are_counted_as_each_finishes_not_wave_by_wave():
    day = dt.date(2025, 6, 30)
    slow, fast = (
        PlannedRun("symbol_layer_job", ("prices",), Rectangle(day, day, keys)) for keys in (("AAA", "BBB"), ("CCC",))
    )
    betas = PlannedRun(
        "symbol_layer_job", ("symbol_factor_exposures", "symbol_metrics"), Rectangle(day, day, ("AAA", "BBB", "CCC"))
    )
    progress = SignalsAFinish(partitions=1)  # the fast chunk: 1 session x 1 symbol x 1 asset

    def runner(run):
        if run is slow:  # the wave's first chunk ends only once the second one was reported
            assert progress.seen.wait(10), "the fast chunk was not reported before the wave ended"
        return ChunkOutcome(run, f"id-{run.rectangle.keys[0]}", True, 0.5)

    with ThreadPoolExecutor(2) as pool:
        partitions, failed, outcomes = run_chunk_waves([[slow, fast], [betas]], runner, pool, progress=progress)
    assert failed == [] and partitions == 2 + 1 + 6
    assert [o.run for o in outcomes] == [slow, fast, betas]  # outcomes keep the wave's order
    reported = [(kind, count, line.split("]")[0]) for kind, count, line in progress.events]
    assert reported == [("finished", 1, "[wave 1/2"), ("finished", 2, "[wave 1/2"), ("finished", 6, "[wave 2/2")]


# ---------------------------------------------------------------------------------- the bar
def test_the_bar_reaches_the_total_across_two_passes_with_the_lines_above_it():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with progress_display(console=console, clock=clock_of(*range(10))) as display:
        assert isinstance(display, BarProgress)
        display.planned(300, "plan: 1 symbol run(s)")
        display.finished(100, "[1/2] symbols [prices]: 100 partitions, 1.0 s, ok")
        display.planned(50, "plan (again): 1 symbol run(s)")
        display.finished(200, "[2/2] symbols [symbol_metrics]: 200 partitions, 1.0 s, ok")
        display.finished(50, "[1/1] symbols [prices]: 50 partitions, 1.0 s, ok")
        task = display.bar.tasks[0]
        assert (task.completed, task.total, task.finished) == (350, 350, True)
    display("FAILED after the bar")  # a closed display still prints its lines
    text = out.getvalue()
    assert "\x1b[" in text and "━" in text  # drawn, with cursor control
    for line in (
        "[1/2] symbols [prices]: 100 partitions, 1.0 s, ok",
        "[2/2] symbols [symbol_metrics]: 200 partitions, 1.0 s, ok",
    ):
        assert line + "\n" in text  # printed as they are (brackets are not markup), not with the counts
    assert "350/350 partitions" in text and last_counts(text) == (350, 350)
    assert text.rstrip().endswith("FAILED after the bar")


class TerminalStream(io.StringIO):
    """What a terminal looks like to a program: a stream whose isatty() is true."""

    def isatty(self):
        return True


@pytest.fixture
def terminal_env(monkeypatch):
    """rich's own variables as on an ordinary terminal, whatever the machine running the tests sets."""
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "160")


def test_a_terminal_gets_the_bar_and_anything_else_plain_lines(terminal_env, monkeypatch):
    with progress_display(TerminalStream()) as display:
        assert isinstance(display, BarProgress)
    with progress_display(io.StringIO()) as display:
        assert isinstance(display, PlainProgress)
    monkeypatch.setenv("FORCE_COLOR", "1")  # colours in CI logs do not make them a terminal
    with progress_display(io.StringIO()) as display:
        assert isinstance(display, PlainProgress)
    monkeypatch.setenv("TTY_INTERACTIVE", "0")  # rich's switch: a terminal that must not be redrawn
    with progress_display(TerminalStream()) as display:
        assert isinstance(display, PlainProgress)


# ------------------------------------------------------------------------- through the command line
@pytest.mark.slow
def test_materialize_off_a_terminal_prints_the_lines_with_done_of_total(cli_env, capsys):  # noqa: F811
    argv = ["materialize", "--start", str(TEST_END), "--end", str(TEST_END), "--symbol", "AAA", "--executor", "local"]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    plan = [line for line in err if line.startswith("plan: ")]
    runs = [line for line in err if re.match(r"\[\d+/\d+\] ", line)]
    assert len(plan) == 1 and runs, err
    assert re.fullmatch(
        r"plan: \d+ symbol run\(s\), \d+ reference run\(s\), \d+ portfolio run\(s\) \| 0/[\d,]+ partitions", plan[0]
    )
    for line in runs:  # today's line, then the counts
        assert re.fullmatch(
            r"\[\d+/\d+\] .+: \d+ partitions, \d+\.\d s, ok \| [\d,]+/[\d,]+ partitions, [\d,.]+/s, ETA \d+:\d\d:\d\d",
            line,
        ), line
    done, total = last_counts(runs[-1])
    summary = next(line for line in err if "partition(s) in" in line)
    assert done == total == int(re.search(r"(\d+) partition\(s\)", summary).group(1)) > 0

    # --json: the outcome on stdout, no progress on stderr
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert '"partitions": 0' in captured.out


@pytest.mark.slow
def test_materialize_on_a_terminal_draws_the_bar_to_the_total(cli_env, terminal_env, monkeypatch):  # noqa: F811
    terminal = TerminalStream()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["materialize", "--start", str(TEST_END), "--end", str(TEST_END), "--symbol", "AAA"]) == 0
    text = terminal.getvalue()
    assert "\x1b[" in text and "━" in text
    assert re.search(r"\[\d+/\d+\] [^\n]+: \d+ partitions, \d+\.\d s, ok\n", text)  # the run lines, above the bar
    done, total = last_counts(text)
    summary = re.search(r"(\d+) partition\(s\) in", text)
    assert done == total == int(summary.group(1)) > 0
