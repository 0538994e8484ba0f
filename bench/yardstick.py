"""procrastinate's own figures, the yardsticks Waypost's are read against: its wake-up (a job deferred
-> its task started) and its no-op jobs per second, each with `procrastinate worker` on a database of
its own on the stack's server; and the sustained replies measured between two runs of the no-op jobs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import procrastinate
import psycopg
from procrastinate.types import JSONDict

from bench import scale
from bench.common import Stack
from waypost.db import composed, connect_sync, fetch_one_sync, fetch_optional_sync
from waypost.devtools.processes import poll, workers_listening
from waypost.schema import migrate


def own_database(running: Stack, name: str) -> str:
    """A new database `name` on the stack's server, migrated (procrastinate's schema with Waypost's)."""
    with psycopg.connect(running.database_url, autocommit=True) as admin:
        admin.execute(composed("devtools_drop_database", name=name))
        admin.execute(composed("devtools_create_database", name=name))
    database_url = urlunsplit(urlsplit(running.database_url)._replace(path=f"/{name}"))
    migrate(database_url)
    return database_url


def procrastinate_worker(database_url: str, queue: str, stdout: int) -> subprocess.Popen[str]:
    """`procrastinate worker` of bench.noop_app at concurrency 10 (Waypost's default) on `queue`, its own
    logs dropped; `stdout` is subprocess.PIPE to read what a task prints."""
    return subprocess.Popen(
        [sys.executable, "-m", "procrastinate", "--app=bench.noop_app.app", "worker", "-q", queue, "-c", "10"],
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def procrastinate_wake(running: Stack, count: int, rate: float) -> tuple[list[float], list[float]]:
    """procrastinate's own wake-up: `count` jobs deferred at `rate`/s, one at a time, to `procrastinate
    worker` (concurrency 10, a database of its own on the same server). For each job, the milliseconds
    from its defer's return (its commit came just before) to its task's first line, and the defer's
    own milliseconds: what a reply run as a procrastinate job waits, at the least."""
    from bench.noop_app import stamp

    database_url = own_database(running, "bench_wake")
    worker = procrastinate_worker(database_url, stamp.queue, subprocess.PIPE)
    started: dict[int, float] = {}

    def read() -> None:
        for line in worker.stdout or ():
            with contextlib.suppress(ValueError):  # the task's lines only: anything else procrastinate prints
                i, at = line.split()
                started[int(i)] = float(at)

    threading.Thread(target=read, daemon=True).start()
    returned: dict[int, float] = {}
    defers: list[float] = []

    async def defer() -> None:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
        async with app.open_async():
            task = app.configure_task(stamp.name, queue=stamp.queue)
            start = time.monotonic()
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                before = time.time()
                await task.defer_async(i=i)
                returned[i] = time.time()
                defers.append((returned[i] - before) * 1000)

    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            poll(lambda: workers_listening(conn) >= 1, timeout=30, what="procrastinate's worker did not listen")
        asyncio.run(defer())
        poll(lambda: len(started) >= count, timeout=60, what="procrastinate's worker did not run every job")
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    return [(started[i] - at) * 1000 for i, at in returned.items()], defers


def procrastinate_noop(running: Stack, count: int) -> float:
    """procrastinate's own no-op jobs per second: one `procrastinate worker` at concurrency 10, on a
    database of its own on the same server (Waypost's workers take jobs from every queue)."""
    from bench.noop_app import noop

    database_url = own_database(running, "bench_noop")

    async def defer() -> None:
        # An App of its own each run: bench.noop_app's keeps the pool it was first opened with
        fresh = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
        async with fresh.open_async():
            jobs: list[JSONDict] = [{"i": i} for i in range(count)]
            await fresh.configure_task(noop.name, queue=noop.queue).batch_defer_async(*jobs)

    asyncio.run(defer())
    worker = procrastinate_worker(database_url, noop.queue, subprocess.DEVNULL)
    try:
        with connect_sync(database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while fetch_optional_sync(conn, "bench_noop_open"):
                assert time.monotonic() < deadline, "procrastinate did not finish the no-op jobs"
                time.sleep(0.2)
            span = fetch_one_sync(conn, "bench_noop_span")["seconds"]
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    return count / float(span)


@dataclasses.dataclass
class Sustained:
    """Sustained replies beside procrastinate's no-op jobs, measured on either side of them."""

    load: int
    replies_per_s: float
    worker_per_s: float
    noop_before: float
    noop_after: float

    @property
    def noop_per_s(self) -> float:
        # the plain mean: slightly below the two runs' jobs over their time together (equal counts), so
        # the ratio errs low
        return (self.noop_before + self.noop_after) / 2

    @property
    def ratio(self) -> float:
        return self.replies_per_s / self.noop_per_s

    def line(self) -> str:
        return (
            f"sustained: {self.replies_per_s:.0f} replies/s end to end ({self.worker_per_s:.0f}/s of worker time) "
            f"for {self.load} messages | procrastinate no-op jobs: {self.noop_before:.0f}/s before, "
            f"{self.noop_after:.0f}/s after (mean {self.noop_per_s:.0f}/s) | ratio {self.ratio:.2f}"
        )


def sustained_beside_noop(
    running: Stack, load: int, replies: Callable[[Stack, int], tuple[float, float]] = scale.sustained
) -> Sustained:
    """scale.sustained() between two runs of procrastinate_noop(), each of twice `load` jobs. The issue's
    goal is a ratio of the two, and the machine's speed moves by up to 2x within minutes: a yardstick
    measured a minute earlier (as it was, before the webhook rates) said as much about the hour as about
    Waypost. Bracketing the replies measures the yardstick in the same minute, tables and all.
    `replies` is scale.sustained, or a wrapper of it that measures more."""
    before = procrastinate_noop(running, 2 * load)
    replies_per_s, worker_per_s = replies(running, load)
    after = procrastinate_noop(running, 2 * load)
    return Sustained(load, replies_per_s, worker_per_s, before, after)
