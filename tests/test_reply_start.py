"""A reply job started by the worker's fetch (worker/reply_start.py, issue 17): the start the run would
make, committed with the fetch; a start that raises there leaves the fetch whole, and the run starts on
its own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import wait_for
from tests.test_reply import deliver
from tests.test_turns import ingest
from waypost.db import fetch_all_sync
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings
from worker import reply_start

WA_ID = "16505557777"  # the end-to-end tests' contact


def a_due_turn(db: psycopg.Connection) -> tuple[int, int]:
    """A turn of two messages (the second deleted by the contact) with an answer already claimed, and
    its reply job due: the outbound job's and the procrastinate job's ids."""
    first, second = ingest(db, "Hi", quiet=60), ingest(db, "what are your opening hours?", quiet=60)
    turn = first["outbound_job_id"]
    assert second["outbound_job_id"] == turn
    db.execute("UPDATE messages SET revoked_at = now() WHERE id = %s", [second["message_id"]])
    wamid = db.execute("SELECT wa_message_id FROM messages WHERE id = %s", [first["message_id"]]).fetchone()
    wamid = wamid["wa_message_id"]
    db.execute(
        "INSERT INTO messages (conversation_id, direction, author, idempotency_key, type, body, status,"
        "                      sending_since, reply_to_message_id)"
        " VALUES (%s, 'outbound', 'ai', %s, 'text', 'Hello', 'sending', now(), %s)",
        [first["conversation_id"], reply_start.KEY_PREFIX + wamid, first["message_id"]],
    )
    db.execute("UPDATE outbound_jobs SET status = 'pending' WHERE id = %s", [turn])
    job = db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args) VALUES ('replies', 'send_reply', 'c', %s)"
        " RETURNING id",
        [Jsonb({"outbound_job_id": turn, "request_id": "r"})],
    ).fetchone()["id"]
    return turn, job


def fetch(db: psycopg.Connection, settings: Settings | None, **params: Any) -> list[dict[str, Any]]:
    worker = db.execute("SELECT procrastinate_register_worker_v1() AS id").fetchone()["id"]
    params = {**reply_start.fetch_params(settings), **params}
    return fetch_all_sync(db, "fetch_jobs_and_backlog", queues=None, worker_id=worker, limit=5, **params)


def note_starts(db: psycopg.Connection, refused_in_fetch: bool = False) -> None:
    """Each start of an outbound job noted with its (top-level) transaction; with `refused_in_fetch`, a
    start made by the worker's fetch raises."""
    db.execute("CREATE TABLE test_starts (outbound_job_id bigint, xid text)")
    refuse = "IF current_query() LIKE '%%waypost_fetch_jobs_v1%%' THEN RAISE EXCEPTION 'refused'; END IF;"
    db.execute(
        "CREATE FUNCTION test_note_start() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        + (refuse if refused_in_fetch else "")
        + " INSERT INTO test_starts VALUES (NEW.id, pg_current_xact_id()::text); RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER test_note_start BEFORE UPDATE ON outbound_jobs FOR EACH ROW"
        " WHEN (NEW.attempts > OLD.attempts) EXECUTE FUNCTION test_note_start()"
    )


def started_by(db: psycopg.Connection) -> list[str]:
    return [row["xid"] for row in db.execute("SELECT xid FROM test_starts").fetchall()]


def started_event(db: psycopg.Connection, job: int) -> str:
    """The transaction that took procrastinate job `job` (its `started` event's)."""
    sql = "SELECT xmin::text AS xid FROM procrastinate_events WHERE job_id = %s AND type = 'started'"
    return str(db.execute(sql, [job]).fetchone()["xid"])


def test_the_fetch_starts_a_reply_job_as_its_run_would(db: psycopg.Connection, settings: Settings) -> None:
    turn, job = a_due_turn(db)
    note_starts(db)
    [taken] = fetch(db, settings)
    assert taken["id"] == job and taken["reply_start"] is not None
    started = reply_start.in_utc(taken["reply_start"])

    # committed with the fetch: the outbound job's start and procrastinate's `started` event are one transaction
    row = db.execute("SELECT status, attempts FROM outbound_jobs WHERE id = %s", [turn]).fetchone()
    assert (row["status"], row["attempts"]) == ("running", 1)
    assert started_by(db) == [started_event(db, job)]

    # the rows the run's own start gives (a second start: one attempt more), value for value and type for type
    db.execute("SET TIME ZONE 'America/New_York'")  # the session's zone: the run reckons in UTC either way
    again = reply_start.in_utc(
        fetch_all_sync(db, "reply_start", outbound_job_id=turn, **reply_start.start_params(settings))
    )
    assert [r["attempts"] for r in started] == [1, 1] and [r["attempts"] for r in again] == [2, 2]
    assert [{**r, "attempts": None} for r in started] == [{**r, "attempts": None} for r in again]

    def typed(rows: list[dict[str, Any]]) -> list[list[tuple[str, type, object]]]:
        return [[(key, type(value), getattr(value, "tzinfo", None)) for key, value in sorted(r.items())] for r in rows]

    assert typed(started) == typed(again)
    assert started[0]["created_at"].tzinfo is dt.UTC
    assert started[1]["revoked_at"] is not None and started[0]["send_body"] == "Hello" and started[0]["history"]


def test_a_start_that_raises_in_the_fetch_leaves_the_fetch_whole(db: psycopg.Connection, settings: Settings) -> None:
    """A job the start refuses is still taken, with no start (its run starts on its own); the jobs
    beside it are taken and started."""
    turn, job = a_due_turn(db)
    broken = db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES ('replies', 'send_reply', %s)"
        " RETURNING id",
        [Jsonb({"outbound_job_id": "not a number", "request_id": "r"})],
    ).fetchone()["id"]
    taken = {row["id"]: row["reply_start"] for row in fetch(db, settings)}
    assert taken.keys() == {job, broken} and taken[broken] is None and taken[job]
    statuses = db.execute("SELECT status FROM procrastinate_jobs WHERE id = ANY(%s)", [[job, broken]]).fetchall()
    assert [s["status"] for s in statuses] == ["doing", "doing"]
    assert db.execute("SELECT status FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["status"] == "running"


def test_a_fetch_starts_at_most_max_starts_reply_jobs(db: psycopg.Connection, settings: Settings) -> None:
    """Each start is a subtransaction: past PostgreSQL's cache of 64 a transaction slows every other
    session's snapshots. The reply jobs after the first `max_starts` (other tasks not counted) are taken
    unstarted, and start on their own."""
    assert reply_start.fetch_params(settings)["max_starts"] == reply_start.MAX_STARTS == 64
    other = db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES ('sweep', 'sweep', '{}') RETURNING id"
    ).fetchone()["id"]
    refused = db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES ('replies', 'send_reply', %s)"
        " RETURNING id",
        [Jsonb({"outbound_job_id": "not a number", "request_id": "r"})],
    ).fetchone()["id"]
    turn, job = a_due_turn(db)  # the last in the fetch's order
    taken = {row["id"]: row["reply_start"] for row in fetch(db, settings, max_starts=1)}
    assert taken == {other: None, refused: None, job: None}
    assert db.execute("SELECT status FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["status"] == "pending"

    # the fetch's order, priority first: the same job, now first, is the one started
    db.execute("UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL")
    db.execute("UPDATE procrastinate_jobs SET priority = 1 WHERE id = %s", [job])
    taken = {row["id"]: row["reply_start"] for row in fetch(db, settings, max_starts=1)}
    assert taken[other] is None and taken[refused] is None and taken[job]
    assert db.execute("SELECT status FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["status"] == "running"


def test_a_reply_job_whose_row_is_locked_is_taken_unstarted(
    db: psycopg.Connection, database_url: str, settings: Settings
) -> None:
    """The fetch holds every slot it fills until it ends: it never waits on one job's row. The run
    starts on its own, and waits there."""
    turn, job = a_due_turn(db)
    with psycopg.connect(database_url) as other:
        other.execute("SELECT 1 FROM outbound_jobs WHERE id = %s FOR UPDATE", [turn])
        [taken] = fetch(db, settings)
        assert (taken["id"], taken["reply_start"]) == (job, None)
    assert db.execute("SELECT status FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["status"] == "pending"


def test_a_fetch_without_settings_starts_nothing(db: psycopg.Connection) -> None:
    """procrastinate's own way of building a worker has no WaypostResources: its runs start themselves."""
    turn, job = a_due_turn(db)
    [taken] = fetch(db, None)
    assert (taken["id"], taken["reply_start"]) == (job, None)
    assert db.execute("SELECT status FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["status"] == "pending"


@pytest.mark.parametrize("refused_in_fetch", [False, True])
def test_a_reply_is_started_by_its_fetch_or_else_by_its_run(
    client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker, refused_in_fetch: bool
) -> None:
    """End to end, a worker process: the outbound job is claimed in the fetch's transaction; when the
    start raises there, the run claims it itself, once. Either way one reply, one attempt."""
    note_starts(db, refused_in_fetch)
    start_worker()
    deliver(client, "what are your opening hours?", wa_id=WA_ID)
    job = wait_for(db, "SELECT * FROM outbound_jobs WHERE status = 'done'")
    assert job["attempts"] == 1 and len(fake_graph.requests) == 1
    [start] = started_by(db)  # refused in the fetch: that start was undone, and noted nothing
    assert (start == started_event(db, job["procrastinate_job_id"])) is not refused_in_fetch
