"""A bare procrastinate App with a no-op task: procrastinate's own throughput, measured by bench.suite
on the same machine and database as Waypost's, as the yardstick."""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("DATABASE_URL", "")))


@app.task(name="bench_noop", queue="bench_noop")
async def noop(i: int) -> None:
    return None
