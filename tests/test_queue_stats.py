"""procrastinate's fetch planned on the statistics of a drained queue (worker/queue_stats.py).

Statistics taken while no job was due make procrastinate_fetch_job_v2 read every due job for each
candidate it skips (its lock held by a running job) instead of looking the lock up: the worker
analyzes the table when the jobs due are far more than the planner believes."""

from __future__ import annotations

import asyncio
import logging

import procrastinate
import psycopg
import pytest

from tests.test_resilience import SLOW_POLL, Probe
from worker.queue_stats import QueueStatistics
from worker.resilience import WaypostWorker

# procrastinate_fetch_job_v2's candidate, as it plans it: is a candidate's lock held?
CANDIDATE = """
EXPLAIN SELECT jobs.id FROM procrastinate_jobs AS jobs
 WHERE NOT EXISTS (
         SELECT 1 FROM procrastinate_jobs AS other_jobs
          WHERE jobs.lock IS NOT NULL AND other_jobs.lock = jobs.lock
            AND (other_jobs.status = 'doing'
                 OR (other_jobs.status = 'todo' AND (other_jobs.priority > jobs.priority
                     OR (other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)))))
   AND jobs.status = 'todo'
 ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1"""
LOOKED_UP = "Index Cond: (lock = jobs.lock)"


def drained_and_analyzed(conn: psycopg.Connection) -> None:
    """2,000 finished jobs, analyzed as autovacuum does once the queue drained (autovacuum itself is
    kept off this database's table: the tests count analyses)."""
    conn.execute("ALTER TABLE procrastinate_jobs SET (autovacuum_enabled = off)")
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status)"
        " SELECT 'default', 'probe', 'conversation:' || (i % 500), '{}', 'succeeded' FROM generate_series(1, 2000) i"
    )
    conn.execute("ANALYZE procrastinate_jobs")


def plan(conn: psycopg.Connection) -> str:
    return "\n".join(row[0] for row in conn.execute(CANDIDATE))


def believed(conn: psycopg.Connection) -> float:
    row = conn.execute("SELECT reltuples FROM pg_class WHERE relname = 'procrastinate_jobs_priority_idx_v1'")
    return float(row.fetchone()[0])  # type: ignore[index]


def analyzed(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'")
    return int(row.fetchone()[0])  # type: ignore[index]


async def test_stale_statistics_are_taken_again_and_the_fetch_looks_its_lock_up(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        drained_and_analyzed(conn)
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status)"
            " SELECT 'default', 'probe', 'conversation:' || (1000 + i % 40), '{}', 'todo'"
            " FROM generate_series(1, 400) i"
        )
        assert LOOKED_UP not in plan(conn)  # the trap: every due job read for each candidate
        assert believed(conn) < 10
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
        async with app.open_async():
            statistics = QueueStatistics()
            assert await statistics.check(app.connector)
            assert believed(conn) >= 100
            assert LOOKED_UP in plan(conn)
            # fresh statistics: nothing to do, and nothing done
            before = analyzed(conn)
            assert not await QueueStatistics().check(app.connector)
            assert analyzed(conn) == before


async def test_statistics_taken_mid_burst_are_taken_again_once_it_drained(database_url: str) -> None:
    """The other way: statistics that count hundreds of due jobs plan the fetch for a long queue, which
    costs more once it drained (1.6 ms a fetch instead of 0.7 at 50 replies a second)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        drained_and_analyzed(conn)
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
            " SELECT 'default', 'probe', '{}', 'todo' FROM generate_series(1, 400)"
        )
        conn.execute("ANALYZE procrastinate_jobs")
        conn.execute("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE status = 'todo' AND id % 100 <> 0")
        assert believed(conn) >= 300
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
        async with app.open_async():
            assert await QueueStatistics().check(app.connector)
        assert believed(conn) < 20


async def test_few_due_jobs_are_left_to_autovacuum(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        drained_and_analyzed(conn)
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
            " SELECT 'default', 'probe', '{}', 'todo' FROM generate_series(1, 20)"
        )
        before = analyzed(conn)
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
        async with app.open_async():
            assert not await QueueStatistics().check(app.connector)
        assert analyzed(conn) == before


async def test_a_worker_with_a_backlog_analyzes_a_queue_analyzed_while_drained(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker.queue_stats")
    with psycopg.connect(database_url, autocommit=True) as conn:
        drained_and_analyzed(conn)
        before = analyzed(conn)
    probe = Probe(database_url)
    async with probe.app.open_async():
        jobs = [{} for _ in range(300)]
        await probe.task.configure(lock="conversation:1").batch_defer_async(*jobs[:150])
        await probe.task.batch_defer_async(*jobs[150:])
        worker = WaypostWorker(
            app=probe.app, concurrency=4, fetch_job_polling_interval=SLOW_POLL, install_signal_handlers=False
        )
        running = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(60):
                while True:
                    probe.ran.clear()  # no job runs between this and the count: one loop
                    if len(probe.started) == len(jobs):
                        break
                    await probe.ran.wait()
        finally:
            worker.stop()
            await running
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert analyzed(conn) > before
    lines = [r.getMessage() for r in caplog.records if r.name == "worker.queue_stats"]
    assert lines and all(line.startswith("procrastinate_jobs analyzed: ") for line in lines), lines


async def test_a_role_that_may_not_analyze_the_table_is_told_once_and_not_asked_again(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose role does not own procrastinate_jobs (migrations run as another one): PostgreSQL
    skips its ANALYZE with a mere warning, so the check sees nothing changed, says so, and stops."""
    role = f"worker_{database_url.rsplit('/', 1)[-1]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        drained_and_analyzed(conn)
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
            " SELECT 'default', 'probe', '{}', 'todo' FROM generate_series(1, 200)"
        )
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    other = psycopg.conninfo.make_conninfo(database_url, user=role)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=other))
    try:
        async with app.open_async():
            statistics = QueueStatistics()
            assert statistics.due()
            assert not await statistics.check(app.connector)
            assert not statistics.due()  # not asked again
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
    warnings = [r.getMessage() for r in caplog.records if r.name == "worker.queue_stats"]
    assert len(warnings) == 1 and "ANALYZE changed nothing" in warnings[0], warnings
