"""A bare procrastinate App with a no-op task: procrastinate's own throughput, the yardstick of the
suite and bench.replies (bench.yardstick.procrastinate_noop, on the same server as Waypost's database);
and a task that prints when it started: procrastinate's own wake-up (bench.yardstick.procrastinate_wake)."""

from __future__ import annotations

import os
import time

import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("DATABASE_URL", "")))


@app.task(name="bench_noop", queue="bench_noop")
async def noop(i: int) -> None:
    return None


@app.task(name="bench_stamp", queue="bench_stamp")
async def stamp(i: int) -> None:
    """Print `i` and the time its task started (same machine as the deferrer, which noted its defer's end)."""
    print(i, time.time(), flush=True)
