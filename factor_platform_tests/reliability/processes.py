"""The real command line in child processes that can be SIGKILLed: ``factor_platform.app.cli.main`` forked
from a fork server that has already imported the CLI and the definitions (``_preload.py``).

A child is a process of its own -- own connections, own Dagster instance, own environment -- that
runs exactly what ``.venv/bin/factor-platform ARGS`` runs (that script is ``sys.exit(cli.main())``);
it only skips the ~7 s of imports. ``run_binary`` runs the installed script itself, for the tests
that are about the script.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.forkserver as forkserver
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".venv" / "bin" / "factor-platform"
# Read once, at import, by the definitions the fork server preloads: every child must agree with it.
PRELOAD_ENV = {"FACTOR_PLATFORM_START_DATE": "2024-01-02", "FACTOR_PLATFORM_CALENDAR": "XNYS"}
_OURS = ("FACTOR_PLATFORM_", "DAGSTER_")
_BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}

_lock = threading.Lock()
_context = None
# multiprocessing reads a child's exit status from a pipe exactly once; Process.start() polls every
# other child too. Two threads reading one pipe would make one of them see EOF (exit code 255), so
# every start and poll goes through this lock.
_poll_lock = threading.Lock()


def base_env(**overrides: str) -> dict[str, str]:
    """The environment of a child: this process's, minus every FACTOR_PLATFORM_/DAGSTER_ variable, plus ``overrides``."""
    env = dict(_BASE_ENV)
    env.update(PRELOAD_ENV)
    env.update(overrides)
    return env


def start_fork_server() -> None:
    """Start the fork server now (it briefly sets PRELOAD_ENV in os.environ: call it before threads exist)."""
    _fork_context()


def _fork_context():
    global _context
    with _lock:
        if _context is None:
            context = mp.get_context("forkserver")
            context.set_forkserver_preload(["factor_platform_tests.reliability._preload"])
            saved = {k: os.environ.get(k) for k in PRELOAD_ENV}
            os.environ.update(PRELOAD_ENV)  # the fork server inherits this environment
            try:
                forkserver.ensure_running()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            _context = context
    return _context


def _child_main(argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    from factor_platform.app import cli
    from factor_platform.defs import partitions

    if partitions.START_DATE.isoformat() != env.get("FACTOR_PLATFORM_START_DATE", "2010-01-04"):
        raise RuntimeError("the fork server preloaded the definitions with another FACTOR_PLATFORM_START_DATE")
    sys.exit(cli.main(argv))


@dataclass
class Child:
    """One command in a child process."""

    argv: list[str]
    process: mp.Process
    out: Path
    err: Path
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        with _poll_lock:
            return self.process.exitcode

    def alive(self) -> bool:
        return self.exitcode is None

    def kill(self) -> bool:
        """SIGKILL the child; True when it was still running (so the kill really interrupted it)."""
        running = self.alive()
        if running:
            os.kill(self.pid, signal.SIGKILL)
            self.killed = True
        self.wait(30)
        return running

    def wait(self, timeout: float = 240) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.exitcode) is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise TimeoutError(f"factor-platform {' '.join(self.argv)} did not finish in {timeout} s")
            time.sleep(0.05)
        return code

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def describe(self) -> str:
        return (
            f"factor-platform {' '.join(self.argv)} -> exit {self.exitcode}\n--- stdout:\n{self.stdout[-3000:]}"
            f"\n--- stderr:\n{self.stderr[-6000:]}"
        )


def launch(argv: list[str], env: dict[str, str], logs: Path, name: str) -> Child:
    """Start ``factor-platform ARGV`` in a child process with exactly ``env``; stdout/stderr go to files in ``logs``."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    context = _fork_context()
    process = context.Process(
        target=_child_main, args=(list(argv), dict(env), str(out), str(err)), name=name, daemon=False
    )
    with _poll_lock:
        process.start()
    return Child(list(argv), process, out, err)


def run(argv: list[str], env: dict[str, str], logs: Path, name: str, timeout: float = 240) -> Child:
    child = launch(argv, env, logs, name)
    child.wait(timeout)
    return child


def run_binary(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed ``.venv/bin/factor-platform`` itself, as an operator runs it."""
    return subprocess.run([str(SCRIPT), *argv], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
