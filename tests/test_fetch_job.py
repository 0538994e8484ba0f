"""The worker's job fetch, waypost_fetch_job_v1 (issue 17): procrastinate's rules, with plans that the
statistics cannot spoil; and waypost_fetch_jobs_v1, several such jobs in one statement. Each test
compares them with procrastinate_fetch_job_v2 on the same rows."""

from __future__ import annotations

import random
from collections.abc import Callable

import procrastinate
import psycopg
import pytest

from tests.plans import rows_handled
from waypost.db import fetch_all_sync
from waypost.sql import query
from worker import reply_start

NO_REPLY_START = reply_start.fetch_params(None)  # the fetch alone: no reply job is started
QUEUES = ("replies", "media")
LOCKS = (None, "conversation:1", "conversation:2", "conversation:3", "conversation:4")
OURS = "waypost_fetch_job_v1"
THEIRS = "procrastinate_fetch_job_v2"


def fill(db: psycopg.Connection, seed: int) -> None:
    """Jobs of two queues, some without a lock, some of higher priority, some scheduled later, some
    already doing (one per lock at most) or done."""
    rng = random.Random(seed)
    doing: set[str | None] = set()
    for _ in range(60):
        lock = rng.choice(LOCKS)
        status = rng.choice(("todo", "todo", "todo", "doing", "succeeded"))
        if status == "doing" and (lock is None or lock in doing):
            status = "todo"
        doing.add(lock if status == "doing" else None)
        db.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, priority, scheduled_at, status, args)"
            " VALUES (%s, 'task', %s, %s, now() + %s * interval '1 hour', %s, '{}')",
            [rng.choice(QUEUES), lock, rng.choice((0, 0, 1)), rng.choice((None, -1, 1)), status],
        )


def drain(db: psycopg.Connection, function: str, seed: int) -> list[int | None]:
    """Fetch (all queues or one) and finish the oldest job doing, in a seeded order, until a fetch of all
    queues finds nothing; the ids fetched. In a transaction rolled back: the rows stay for the other."""
    rng = random.Random(seed)
    taken: list[int | None] = []
    with db.transaction(force_rollback=True):
        for _ in range(200):
            queues = rng.choice((None, ["replies"], ["media"]))
            row = db.execute(f"SELECT id FROM {function}(%s::varchar[], NULL)", [queues]).fetchone()
            taken.append(row[0] if row else None)
            if rng.random() < 0.6:
                db.execute(
                    "SELECT procrastinate_finish_job_v1(id, 'succeeded', false) FROM procrastinate_jobs"
                    " WHERE status = 'doing' ORDER BY id LIMIT 1"
                )
            if queues is None and taken[-1] is None:
                break
    return taken


SEEDS = [0, 2, 3, 4, 5, 7]  # seeds whose drains have fetches held back


@pytest.mark.parametrize("seed", SEEDS)
def test_jobs_are_taken_in_the_order_and_by_the_lock_rules_of_procrastinate(
    conn: psycopg.Connection, seed: int
) -> None:
    fill(conn, seed)
    theirs = drain(conn, THEIRS, seed)
    assert [job for job in theirs if job is not None], "the scenario takes jobs"
    assert None in theirs[:-1], "the scenario has fetches held back by a lock, a queue or a schedule"
    assert drain(conn, OURS, seed) == theirs


def their_batch(db: psycopg.Connection, queues: list[str] | None, limit: int) -> list[int]:
    """procrastinate's fetch, `limit` times in a row (or until it finds nothing)."""
    taken = []
    for _ in range(limit):
        row = db.execute(f"SELECT id FROM {THEIRS}(%s::varchar[], NULL)", [queues]).fetchone()
        if row is None or row[0] is None:
            break
        taken.append(row[0])
    return taken


def our_batch(db: psycopg.Connection, queues: list[str] | None, limit: int) -> list[int]:
    rows = db.execute("SELECT id FROM waypost_fetch_jobs_v1(%s::varchar[], NULL, %s)", [queues, limit])
    return [row[0] for row in rows]


def drain_in_batches(db: psycopg.Connection, batch: Callable[..., list[int]], seed: int) -> list[list[int]]:
    """As `drain`, each fetch asking for 1 to 5 jobs at once; the ids of each batch."""
    rng = random.Random(seed)
    batches: list[list[int]] = []
    with db.transaction(force_rollback=True):
        for _ in range(200):
            queues = rng.choice((None, ["replies"], ["media"]))
            batches.append(batch(db, queues, rng.choice((1, 2, 3, 5))))
            for _ in range(rng.choice((0, 1, 2))):
                db.execute(
                    "SELECT procrastinate_finish_job_v1(id, 'succeeded', false) FROM procrastinate_jobs"
                    " WHERE status = 'doing' ORDER BY id LIMIT 1"
                )
            if queues is None and not batches[-1]:
                break
    return batches


@pytest.mark.parametrize("seed", SEEDS)
def test_a_batch_takes_what_as_many_fetches_in_a_row_take(conn: psycopg.Connection, seed: int) -> None:
    """Never two jobs of one lock together, nor a job with one ahead of it: as procrastinate's fetch
    gives them one after the other while none ends."""
    fill(conn, seed)
    theirs = drain_in_batches(conn, their_batch, seed)
    assert any(len(batch) > 1 for batch in theirs), "the scenario takes several jobs at once"
    assert drain_in_batches(conn, our_batch, seed) == theirs


def test_the_workers_fetch_says_whether_jobs_wait_beside_those_it_took(conn: psycopg.Connection) -> None:
    def fetch(limit: int) -> list[tuple[int | None, bool]]:
        rows = fetch_all_sync(
            conn, "fetch_jobs_and_backlog", queues=["replies"], worker_id=None, limit=limit, **NO_REPLY_START
        )
        return [(row["id"], row["backlog"]) for row in rows]

    ids = [
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args) VALUES ('replies', 'task', %s, '{}')"
            " RETURNING id",
            [lock],
        ).fetchone()[0]
        for lock in ("conversation:1", "conversation:1", "conversation:2", None)
    ]
    with conn.transaction(force_rollback=True):
        # the second job of conversation:1 waits for the first
        assert fetch(5) == [(ids[0], True), (ids[2], True), (ids[3], True)]
        assert fetch(5) == [(None, True)]  # nothing to take, one job held back
    with conn.transaction(force_rollback=True):
        assert fetch(2) == [(ids[0], True), (ids[2], True)]
    conn.execute("DELETE FROM procrastinate_jobs WHERE id <> %s", [ids[3]])
    assert fetch(5) == [(ids[3], False)]  # the last one taken: nothing else waits
    assert fetch(5) == [(None, False)]


def test_nothing_due_is_a_row_of_nulls(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, scheduled_at, args)"
        " VALUES ('replies', 'task', now() + interval '1 hour', '{}')"
    )
    for function in (OURS, THEIRS):
        row = conn.execute(f"SELECT * FROM {function}(NULL, NULL)").fetchone()
        assert row is not None and set(row) == {None}


def test_a_job_another_fetch_holds_is_skipped_and_its_lock_stays_closed(database_url: str) -> None:
    """A job whose row another fetch has locked (its claim not yet committed) is skipped, not waited
    for; and the next job of its lock is not taken meanwhile: the lock's order holds."""
    with psycopg.connect(database_url, autocommit=True) as db, psycopg.connect(database_url) as other:
        ids = [
            db.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args)"
                " VALUES ('replies', 'task', %s, '{}') RETURNING id",
                [lock],
            ).fetchone()[0]
            for lock in ("conversation:1", "conversation:1", "conversation:2")
        ]
        other.execute("SELECT id FROM procrastinate_jobs WHERE id = %s FOR UPDATE", [ids[0]])
        db.execute("SET lock_timeout = '2s'")  # a wait for the held row would fail the test
        for function in (OURS, THEIRS):
            with db.transaction(force_rollback=True):
                assert db.execute(f"SELECT id FROM {function}(NULL, NULL)").fetchone()[0] == ids[2]
        other.rollback()


def stalled_queue(db: psycopg.Connection) -> None:
    """The benchmark's stall: statistics taken while the queue was drained (autovacuum's analyze after
    a burst), then a backlog of 1,000 replies, 5 for each of 200 conversations in turn; the worker's
    10 slots hold the first 10 conversations, whose later jobs wait at the front of the queue."""
    db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status)"
        " SELECT 'replies', 'send_reply', 'conversation:' || (i % 3500), '{}', 'succeeded'"
        " FROM generate_series(1, 5700) i"
    )
    db.execute("ANALYZE procrastinate_jobs")
    db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args)"
        " SELECT 'replies', 'send_reply', 'conversation:' || (4000 + i / 5), '{}' FROM generate_series(0, 999) i"
    )
    db.execute(
        "UPDATE procrastinate_jobs SET status = 'doing' WHERE id IN ("
        " SELECT min(id) FROM procrastinate_jobs WHERE status = 'todo' GROUP BY lock ORDER BY min(id) LIMIT 10)"
    )


def test_a_fetch_on_the_statistics_of_a_drained_queue_checks_each_lock_through_one_index_entry(
    conn: psycopg.Connection,
) -> None:
    """The worker's fetch (sql/queries.sql fetch_jobs_and_backlog) checks each candidate's lock through
    its entries in one index, where procrastinate's own fetch, planned on the same statistics, reads
    the waiting jobs again for each candidate it passes over."""
    stalled_queue(conn)
    params = {"queues": ["replies"], "worker_id": None}
    ours = rows_handled(conn, query("fetch_jobs_and_backlog"), {**params, "limit": 1, **NO_REPLY_START})
    theirs = rows_handled(conn, procrastinate.sql.queries["fetch_job"], params)
    print(f"\nrows handled by a fetch: ours {ours}, procrastinate's {theirs}")
    # 40 candidates passed over, each locked by id and checked through its lock's 5 entries, read in 3 chunks
    assert ours < 500
