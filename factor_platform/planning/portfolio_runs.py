"""The portfolio sensor's planning: onboarding new portfolios, catching every portfolio up, and
recomputing stale symbol partitions, as keyed runs (pure: the sensor reads the state and turns the
runs into RunRequests, `defs.history.run_request`).

A tick runs every second, so these rules read what is cheap to keep current -- each portfolio's newest
snapshot and its symbols' newest prices -- where `planning.plan` enumerates the wanted sessions: a
portfolio is missing the sessions after its latest snapshot (or from its inception), plus those from
its first stale session. A hole in the middle of a portfolio's snapshots is `materialize`'s to find.
Runs are keyed, so a request is made once: the book's version is in a portfolio's key (a changed book
is new work), the stale marks' time in a stale run's. Portfolios caught up over the same sessions share
one run (`group_catch_ups`, cut into one run per worker process): a nightly of 500 portfolios is a run
per core, not 500 runs of Dagster's overhead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from factor_platform.domain import sessions
from factor_platform.domain.book import Book
from factor_platform.layers.names import (
    HISTORY_JOB,
    PORTFOLIO_ASSETS,
    PORTFOLIO_LAYER_JOB,
    REFERENCE_DATA_JOB,
    SYMBOL_ASSETS,
    SYMBOL_DAY_ASSETS,
    SYMBOL_LAYER_JOB,
)
from factor_platform.planning.plan import PlannedRun
from factor_platform.planning.rectangles import Rectangle, plan_rectangles

ONBOARDING_TAG = "factor_platform/onboarding"


@dataclass(frozen=True)
class Window:
    """Where runs may begin: the platform's first session, and the partition window's (history before it)."""

    first_session: dt.date
    partitions_from: dt.date
    calendar: str = "XNYS"

    def first(self, inception: dt.date) -> dt.date:
        return max(sessions.session_on_or_after(inception, self.calendar), self.first_session)

    def run(self, job_name: str, assets: Sequence[str], rectangle: Rectangle, tags: dict | None = None) -> PlannedRun:
        """A run of the layer job over `rectangle`, or a history run when it begins before the window."""
        job = HISTORY_JOB if rectangle.first < self.partitions_from else job_name
        return PlannedRun(job, tuple(assets), rectangle, extra_tags=tuple(sorted((tags or {}).items())))


@dataclass(frozen=True)
class KeyedRun:
    """A planned run and the run key that makes its request idempotent."""

    run_key: str
    run: PlannedRun

    @property
    def job_name(self) -> str:
        return self.run.job_name

    @property
    def tags(self) -> dict[str, str]:
        return self.run.tags()


@dataclass
class Onboarding:
    """What one tick starts for the portfolios Dagster does not know yet."""

    runs: list[KeyedRun] = field(default_factory=list)
    portfolios: list[str] = field(default_factory=list)  # partitions to add
    symbols: list[str] = field(default_factory=list)  # partitions to add, computed by this tick's runs
    waiting: dict[str, list[str]] = field(default_factory=dict)  # portfolio -> run keys it waits for


def onboard(
    books: Sequence[Book],
    known_portfolios: set[str],
    known_symbols: set[str],
    *,
    etfs: Sequence[str],
    latest: dt.date,
    window: Window,
) -> Onboarding:
    """One symbol-layer run (and one reference-data run) per new portfolio over its symbols nobody
    has computed yet; a symbol two new portfolios share is claimed by the first, the second waits."""
    out = Onboarding()
    claimed: dict[str, str] = {}  # new symbol -> run key of the run computing it
    for book in books:
        pid = book.portfolio_id
        if pid in known_portfolios:
            continue
        held = [*book.held_symbols, *etfs]
        fresh = [s for s in dict.fromkeys(held) if s not in known_symbols and s not in claimed]
        depends = sorted({claimed[s] for s in held if s in claimed})
        if fresh:
            key = f"onboard-symbols:{pid}:{book.created_at}"
            tags = {ONBOARDING_TAG: pid}
            rect = Rectangle(window.first(book.inception), latest, tuple(fresh))
            out.runs.append(KeyedRun(key, window.run(SYMBOL_LAYER_JOB, SYMBOL_DAY_ASSETS, rect, tags)))
            reference = PlannedRun(
                REFERENCE_DATA_JOB, tuple(SYMBOL_ASSETS), keys=tuple(fresh), extra_tags=tuple(tags.items())
            )
            out.runs.append(KeyedRun(f"onboard-reference:{pid}:{book.created_at}", reference))
            claimed.update({s: key for s in fresh})
            out.symbols.extend(fresh)
            depends.append(key)
        out.portfolios.append(pid)
        out.waiting[pid] = depends
    return out


def catch_up_run(
    book: Book,
    *,
    latest: dt.date,
    symbols_through: dt.date | None,
    snapshots_through: dt.date | None,
    stale_from: dt.date | None,
    stale_stamp: str | None,
    window: Window,
) -> KeyedRun | None:
    """The run over a portfolio's missing sessions: from inception (or after its latest snapshot, or
    from its first stale session) up to the latest session its symbols have prices for; None when
    there is nothing to compute. The book's version is in the run key: a changed book (its figures
    deleted on import) is a new run, a re-import of an earlier file too."""
    end = min(latest, symbols_through) if symbols_through is not None else latest
    if snapshots_through is None:
        first = window.first(book.inception)
    else:
        first = sessions.session_on_or_after(snapshots_through + dt.timedelta(days=1), window.calendar)
    marker = ""
    if stale_from is not None:  # prices changed under figures already computed
        first = min(first, stale_from)
        marker = f":stale-{stale_stamp}"
    if first > end:
        return None
    key = f"portfolio:{book.portfolio_id}:{first}:{end}:{book.run_key_part}{marker}"
    return KeyedRun(key, window.run(PORTFOLIO_LAYER_JOB, PORTFOLIO_ASSETS, Rectangle(first, end, (book.portfolio_id,))))


def stale_runs(
    days_by_asset: dict[str, dict[str, set[dt.date]]], stamps: dict[str, str], key_order: list[str], window: Window
) -> list[KeyedRun]:
    """Runs recomputing stale symbol-layer sessions, one per asset and rectangle (`stamps`: the
    newest mark's time per asset, in the run key: a later mark is new work)."""
    out, known = [], set(key_order)
    for asset, days in days_by_asset.items():
        days = {k: d for k, d in days.items() if d and k in known}
        if not days:
            continue
        all_days = sorted({d for ds in days.values() for d in ds})
        for rect in plan_rectangles(days, sessions=all_days, key_order=key_order):
            key = f"stale:{asset}:{rect.first}:{rect.last}:{rect.keys[0]}:{rect.keys[-1]}:{len(rect.keys)}:{stamps[asset]}"
            out.append(KeyedRun(key, window.run(SYMBOL_LAYER_JOB, [asset], rect)))
    return out


PORTFOLIOS_PER_RUN = 50  # fewer per run and a run's launch (~4-8 s of Dagster's) costs more than a process saves


def group_catch_ups(runs: Sequence[KeyedRun], key_order: Sequence[str], *, processes: int = 1) -> list[KeyedRun]:
    """The catch-up runs of portfolios over the same sessions (and job) as one run per block of them that
    stands together in `key_order` (the portfolio partitions' order: a run's keys are a range of it, so a
    portfolio left out splits the block), cut into up to `processes` runs of PORTFOLIOS_PER_RUN or more
    (runs go to separate processes). A run of one keeps its portfolio's run key; a larger run's key names
    its sessions and digests its members' keys, so the same members ask once."""
    position = {key: i for i, key in enumerate(key_order)}
    by_span: dict[tuple, list[KeyedRun]] = {}
    for run in runs:
        rect = run.run.rectangle
        by_span.setdefault((run.job_name, rect.first, rect.last), []).append(run)
    blocks: list[list[KeyedRun]] = []
    for members in by_span.values():
        members = sorted(members, key=lambda r: position[r.run.rectangle.keys[0]])
        block: list[KeyedRun] = []
        for run in members:
            if block and position[run.run.rectangle.keys[0]] != position[block[-1].run.rectangle.keys[0]] + 1:
                blocks.append(block)
                block = []
            block.append(run)
        blocks.append(block)
    out = []
    for block in blocks:
        pieces = max(1, min(processes, len(block) // PORTFOLIOS_PER_RUN))
        size = -(-len(block) // pieces)
        out.extend(_one_run(block[i : i + size]) for i in range(0, len(block), size))
    return out


def _one_run(block: list[KeyedRun]) -> KeyedRun:
    if len(block) == 1:
        return block[0]
    first = block[0].run
    rect = first.rectangle
    keys = tuple(r.run.rectangle.keys[0] for r in block)
    digest = hashlib.sha256("\n".join(r.run_key for r in block).encode()).hexdigest()[:16]
    key = f"portfolios:{rect.first}:{rect.last}:{keys[0]}..{keys[-1]}:{len(keys)}:{digest}"
    return KeyedRun(
        key,
        PlannedRun(first.job_name, first.assets, Rectangle(rect.first, rect.last, keys), extra_tags=first.extra_tags),
    )
