"""`procrastinate --app=worker.app worker` runs with Waypost's worker settings, read when it starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.conftest import WorkerProcess, wait_until, waypost_env
from waypost.settings import Settings

STARTING = re.compile(r"worker starting concurrency=(\S+) poll_interval=(\S+)s")


def starting_options(settings: Settings, log_path: Path, *flags: str, **env: str) -> tuple[str, ...]:
    """The (concurrency, poll interval) a `procrastinate worker` logs once it has built its worker."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "procrastinate", "--app=worker.app", "worker", *flags],
            env=waypost_env(settings, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            found = wait_until(
                lambda: STARTING.search(log_path.read_text()) or proc.poll() is not None,
                what="the worker's starting line",
            )
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    assert isinstance(found, re.Match), log_path.read_text()
    return found.groups()


def test_the_procrastinate_command_applies_the_worker_settings(settings: Settings, tmp_path: Path) -> None:
    """It once built its options from defaults at import: WAYPOST_WORKER_CONCURRENCY was ignored.
    The line comes from the worker procrastinate built, with the values it runs with."""
    options = starting_options(
        settings, tmp_path / "worker.log", WAYPOST_WORKER_CONCURRENCY="3", WAYPOST_WORKER_POLL_INTERVAL="2.5"
    )
    assert options == ("3", "2.5")


def test_procrastinate_flags_win_over_the_settings(settings: Settings, tmp_path: Path) -> None:
    options = starting_options(settings, tmp_path / "worker.log", "-c", "2", WAYPOST_WORKER_CONCURRENCY="3")
    assert options[0] == "2"


def test_waypost_worker_yields_the_cpu_to_the_acknowledgements(start_worker: Callable[..., WorkerProcess]) -> None:
    """WAYPOST_WORKER_NICE is the least niceness `waypost worker` runs at: never lower than it started with."""
    worker = start_worker(WAYPOST_WORKER_NICE="7")
    assert psutil.Process(worker.proc.pid).nice() == max(os.getpriority(os.PRIO_PROCESS, 0), 7)
