"""bench/waits.py: the sampler of where PostgreSQL's busy backends wait (`bench.mixed --waits`), against
a real PostgreSQL: a statement held behind another transaction's lock is counted as waiting for it."""

from __future__ import annotations

import threading

import psycopg

from bench.waits import WaitSampler
from tests.conftest import wait_until


def test_a_statement_waiting_for_a_lock_is_counted_as_such(database_url: str) -> None:
    with (
        psycopg.connect(database_url) as holder,
        psycopg.connect(database_url, autocommit=True) as waiter,
        psycopg.connect(database_url, autocommit=True) as watch,
    ):
        holder.execute("CREATE TABLE bench_waits_probe (id int)")
        holder.commit()
        holder.execute("LOCK TABLE bench_waits_probe IN ACCESS EXCLUSIVE MODE")
        # a waiter checks for a deadlock after deadlock_timeout (1 s), running meanwhile: not during this test
        waiter.execute("SET deadlock_timeout = '10min'")
        blocked = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM bench_waits_probe"))
        blocked.start()
        try:
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event = 'relation'"
            wait_until(lambda: watch.execute(waiting, [waiter.info.backend_pid]).fetchone()[0], what="the waiter")
            with WaitSampler(database_url, interval=0.001) as waits:
                wait_until(lambda: waits.samples >= 50 or waits.error, what="50 samples")
                waits.stop()  # as bench.mixed stops it before its block ends
        finally:
            holder.rollback()  # the waiter goes on
            blocked.join(timeout=30)
    # the waiter in every sample, and nothing else: the sampler leaves its own statement out
    assert waits.error is None and waits.samples >= 50
    assert waits.mean() == {"Lock:relation": 1.0}
    line = waits.line()
    assert "Lock:relation 1.00" in line and f"mean over {waits.samples} samples" in line


def test_a_sampler_that_cannot_connect_says_so_on_its_line() -> None:
    with WaitSampler("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2) as waits:
        wait_until(lambda: waits.error is not None, what="the connection refused")
    assert isinstance(waits.error, psycopg.OperationalError)
    assert waits.mean() == {}
    assert waits.line().startswith("  PostgreSQL backends: not measured, the sampler stopped after 0 samples: ")
