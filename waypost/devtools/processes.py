"""Waiting for things to come up, and stopping child processes: one way for `waypost dev`, the
tests and the benchmarks."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import psycopg

from waypost.db import connect_sync, fetch_one_sync, fetch_optional_sync

logger = logging.getLogger(__name__)

T = TypeVar("T")
STOP_TIMEOUT = 15.0


def poll(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.1,
    alive: Callable[[], None] | None = None,
    error: type[Exception] = RuntimeError,
) -> T:
    """Call `check` until it returns something truthy, and return that. `alive` raises when what is
    awaited has died (fail fast instead of waiting out the timeout); `what` (or what it returns, so a
    log can be read at the moment of failure) is the message of the `error` raised at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        if value := check():
            return value
        if time.monotonic() > deadline:
            raise error(what() if callable(what) else what)
        time.sleep(interval)


def stop_processes(
    procs: Iterable[subprocess.Popen], timeout: float = STOP_TIMEOUT, label: Callable[[subprocess.Popen], str] = str
) -> None:
    """SIGTERM all first (they stop side by side), then wait for each; one still running after
    `timeout` s is killed."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0f s; killing it", label(proc), timeout)
            proc.kill()
            proc.wait()


def workers_listening(conn: psycopg.Connection) -> int:
    """How many procrastinate workers LISTEN for jobs on `conn`'s database."""
    return int(fetch_one_sync(conn, "devtools_workers_listening")["listening"])


def worker_registered(database_url: str) -> bool:
    with connect_sync(database_url, autocommit=True) as conn:
        return fetch_optional_sync(conn, "devtools_worker_registered") is not None
