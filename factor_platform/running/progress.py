"""The `Progress` a materialize reports through while it runs: lines for a person, and the partition
counts behind them (`app.progress` renders them; no terminal code here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """What a materialize reports while it runs: called with a line, it is the plain line callback
    `progress` always was; the two events carry the partition counts behind their lines.

    - `planned(partitions, line)`: a plan (one per pass) adds `partitions` to the total;
    - `finished(partitions, line)`: a Dagster run (a chunk run for `processes` and `celery`) ran, ok or
      failed, over `partitions`. A run that is not run is only a line: its partitions stay to do.
    """

    def __call__(self, line: str) -> None: ...

    def planned(self, partitions: int, line: str) -> None: ...

    def finished(self, partitions: int, line: str) -> None: ...


@dataclass(frozen=True)
class Lines:
    """A `Progress` from a line callback (`print`, `list.append`, None): it gets exactly its lines."""

    say: Callable[[str], None] | None = None

    def __call__(self, line: str) -> None:
        if self.say is not None:
            self.say(line)

    def planned(self, partitions: int, line: str) -> None:
        self(line)

    def finished(self, partitions: int, line: str) -> None:
        self(line)


ProgressLike = Progress | Callable[[str], None] | None


def as_progress(progress: ProgressLike) -> Progress:
    """`progress` as a `Progress`: a `Progress` itself, else its lines only (None: nothing)."""
    return progress if isinstance(progress, Progress) else Lines(progress)
