"""A committed defer wakes a listening worker through NOTIFY, far sooner than its poll would."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from tests.conftest import post_webhook, waypost_env
from waypost.devtools import payloads
from waypost.settings import Settings


def wait_done(db: psycopg.Connection, count: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = db.execute(
            "SELECT j.*, EXTRACT(EPOCH FROM j.started_at - e.processed_at) * 1000 AS wake_ms "
            "FROM outbound_jobs j JOIN webhook_events e ON e.request_id = j.request_id "
            "WHERE j.status = 'done' ORDER BY j.id"
        ).fetchall()
        if len(rows) >= count:
            return rows
        time.sleep(0.01)
    raise AssertionError(f"only {len(rows)} of {count} jobs done")


def test_commit_wakes_the_worker_without_waiting_for_its_poll(
    client: httpx.Client, db: psycopg.Connection, start_worker
) -> None:
    # A 30 s poll: only NOTIFY can explain a start within a second.
    worker = start_worker(WAYPOST_WORKER_POLL_INTERVAL="30")
    samples = []
    for i in range(10):
        time.sleep(0.2)  # let the worker go idle again
        post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message(f"wake {i}", wa_id=f"5550{i}"))))
        samples.append(float(wait_done(db, i + 1)[-1]["wake_ms"]))
    print(
        f"\nwake latency commit->task start ms: median={statistics.median(samples):.1f} "
        f"max={max(samples):.1f} samples={[round(s, 1) for s in samples]}"
    )
    assert max(samples) < 5000, worker.output()  # measured: a few ms; a 30 s poll would show
    log = worker.output()
    assert "picked job" in log and "job done" in log
    first = wait_done(db, 1)[0]
    assert f"request_id={first['request_id']} job_id={first['procrastinate_job_id']}" in log


@pytest.mark.usefixtures("fake_graph")  # its worker sends
def test_procrastinate_cli_runs_the_app_as_it_stands(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "procrastinate", "--app=worker.app", "worker"],
        env=waypost_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message("hello"))))
        wait_done(db, 1)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
