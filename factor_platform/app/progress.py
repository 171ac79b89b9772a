"""A long materialize's progress, rendered: the `running.progress.Progress` that `materialize` reports.

On a terminal (the stream a TTY, and rich not told otherwise by TTY_COMPATIBLE=0, TTY_INTERACTIVE=0
or TERM=dumb) a rich progress bar — partitions done of the total, partitions per second, time left —
with the per-run lines printed above it. Elsewhere (CI, logs) the lines as before, each plan and run
line followed by the counts (` | 1,200/3,000 partitions, 40.0/s, ETA 0:00:45`).

The unit is the Dagster run: a run's partitions count when it finishes (a chunk run for the
`processes` and `celery` executors), and each plan pass adds its partitions to the total. No
thread draws the bar: it is redrawn on each event, so the celery executor can still fork its pool.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, TextColumn
from rich.progress import Progress as RichProgress

Clock = Callable[[], float]


class Tally:
    """Partitions planned and done, and what they say about the rest, on `clock` (seconds).

    The rate is partitions done per second since the first plan; the time left is what is not done
    at that rate. Both are None until a run has finished.
    """

    def __init__(self, clock: Clock = time.monotonic):
        self.clock = clock
        self.total = 0
        self.done = 0
        self.started: float | None = None

    def plan(self, partitions: int) -> None:
        if self.started is None:
            self.started = self.clock()
        self.total += partitions

    def finish(self, partitions: int) -> None:
        self.done += partitions

    def rate(self, now: float) -> float | None:
        elapsed = now - self.started if self.started is not None else 0.0
        return self.done / elapsed if self.done and elapsed > 0 else None

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        return None if rate is None else max(self.total - self.done, 0) / rate

    def text(self) -> str:
        """`1,200/3,000 partitions, 40.0/s, ETA 0:00:45` (rate and ETA once a run has finished)."""
        now = self.clock()
        counts = f"{self.done:,}/{self.total:,} partitions"
        rate, eta = self.rate(now), self.eta(now)
        if rate is None or eta is None:
            return counts
        return f"{counts}, {rate:,.1f}/s, ETA {dt.timedelta(seconds=round(eta))}"


class PlainProgress:
    """A `Progress` as plain lines on `stream`: today's lines, each plan and run line with ` | <counts>`."""

    def __init__(self, stream: TextIO, *, clock: Clock = time.monotonic):
        self.stream = stream
        self.tally = Tally(clock)

    def __call__(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def planned(self, partitions: int, line: str) -> None:
        self.tally.plan(partitions)
        self(f"{line} | {self.tally.text()}")

    def finished(self, partitions: int, line: str) -> None:
        self.tally.finish(partitions)
        self(f"{line} | {self.tally.text()}")

    def close(self) -> None:
        pass


class BarProgress:
    """A `Progress` as a rich bar on `console`, the lines printed above it as they are."""

    def __init__(self, console: Console, *, clock: Clock = time.monotonic):
        self.tally = Tally(clock)
        self.bar = RichProgress(
            BarColumn(bar_width=24),
            TextColumn("{task.fields[counts]}", markup=False),
            console=console,
            auto_refresh=False,  # no drawing thread (module docstring)
            redirect_stdout=False,  # stdout is the commands' output (--json, the demo's summary)
        )
        self.task = self.bar.add_task("materialize", total=None, counts="planning")
        self.drawing = True
        self.bar.start()

    def __call__(self, line: str) -> None:
        self.bar.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def planned(self, partitions: int, line: str) -> None:
        self.tally.plan(partitions)
        self(line)
        self._update()

    def finished(self, partitions: int, line: str) -> None:
        self.tally.finish(partitions)
        self(line)
        self._update()

    def _update(self) -> None:
        self.bar.update(
            self.task, total=self.tally.total, completed=self.tally.done, counts=self.tally.text(), refresh=self.drawing
        )

    def close(self) -> None:
        """Stop drawing; the last state of the bar stays on screen, and lines print plainly after."""
        self.drawing = False
        self.bar.stop()


def is_interactive(stream: TextIO) -> bool:
    """A terminal a bar can be drawn on: a TTY that rich's own variables do not declare otherwise."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return tty and Console(file=stream).is_interactive


@contextmanager
def progress_display(
    stream: TextIO | None = None, *, console: Console | None = None, clock: Clock = time.monotonic
) -> Iterator[PlainProgress | BarProgress]:
    """The `Progress` to pass to `materialize` while the block runs: a bar on `console`, or on `stream`
    (default: stderr) when it is a terminal; plain lines on `stream` otherwise."""
    stream = stream if stream is not None else sys.stderr
    if console is None and is_interactive(stream):
        console = Console(file=stream)
    display = BarProgress(console, clock=clock) if console is not None else PlainProgress(stream, clock=clock)
    try:
        yield display
    finally:
        display.close()
