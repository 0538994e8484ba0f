"""A send's record ends its procrastinate job (worker/job_end.py, issue 17): in the record's own
transaction, only while the job is 'doing', and the worker then writes nothing more for it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import procrastinate
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import running_worker
from waypost.db import create_pool, fetch_one_sync
from waypost.devtools import payloads
from waypost.settings import Settings
from worker import job_end, sending

SENT_AT = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def a_send(db: psycopg.Connection) -> dict[str, int]:
    """A contact's message and the AI's answer to it, accepted by Meta and not yet recorded."""
    conversation = db.execute(
        "INSERT INTO conversations (phone_number_id, wa_id) VALUES (%s, '15550001') RETURNING id",
        [payloads.PHONE_NUMBER_ID],
    ).fetchone()["id"]
    inbound = db.execute(
        "INSERT INTO messages (conversation_id, direction, author, wa_message_id, type, body, status)"
        " VALUES (%s, 'inbound', 'contact', 'wamid.in', 'text', 'Hi', 'received') RETURNING id",
        [conversation],
    ).fetchone()["id"]
    reply = db.execute(
        "INSERT INTO messages (conversation_id, direction, author, idempotency_key, type, body, status,"
        "                      sending_since, reply_to_message_id)"
        " VALUES (%s, 'outbound', 'ai', 'reply:wamid.in', 'text', 'Hello', 'sending', now(), %s) RETURNING id",
        [conversation, inbound],
    ).fetchone()["id"]
    return {"conversation": conversation, "inbound": inbound, "reply": reply}


def a_worker(db: psycopg.Connection) -> int:
    return db.execute("SELECT procrastinate_register_worker_v1() AS id").fetchone()["id"]


def a_job(db: psycopg.Connection, status: str, worker: int | None = None) -> tuple[int, int]:
    """A send job in `status`, taken by `worker` (a new one by default); the job's and the worker's ids."""
    worker = a_worker(db) if worker is None else worker
    job = db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
        " VALUES ('replies', 'send_reply', '{}') RETURNING id"
    ).fetchone()["id"]
    if status != "todo":
        db.execute("UPDATE procrastinate_jobs SET status = %s, worker_id = %s WHERE id = %s", [status, worker, job])
    return job, worker


def record(db: psycopg.Connection, send: dict[str, int], read: bool = False, **job: Any) -> dict[str, Any]:
    """`record_send`; with `read`, the contact's message marked read with it."""
    return fetch_one_sync(
        db,
        "record_send",
        message_id=send["reply"],
        wa_message_id="wamid.out",
        sent_at=SENT_AT,
        read_conversation_id=send["conversation"] if read else None,
        read_message_id=send["inbound"] if read else None,
        **(job or job_end.NO_JOB),
    )


def job_row(db: psycopg.Connection, job: int) -> dict[str, Any] | None:
    return db.execute(
        "SELECT status, attempts, xmin::text AS xid FROM procrastinate_jobs WHERE id = %s", [job]
    ).fetchone()


@pytest.mark.parametrize("read", [False, True])
def test_the_record_ends_a_running_job_in_its_own_transaction(db: psycopg.Connection, read: bool) -> None:
    send, (job, worker) = a_send(db), a_job(db, "doing")
    end = job_end.JobEnd(job, worker, delete=False)
    assert record(db, send, read, **end.params()) == {"recorded": True, "job_ended": True}

    reply = db.execute("SELECT status, xmin::text AS xid FROM messages WHERE id = %s", [send["reply"]]).fetchone()
    ended = job_row(db, job)
    assert ended is not None and (ended["status"], ended["attempts"]) == ("succeeded", 1)
    assert reply["status"] == "sent" and ended["xid"] == reply["xid"]  # ended by the record's statement
    marked = db.execute("SELECT read_receipt_at FROM messages WHERE id = %s", [send["inbound"]]).fetchone()
    assert marked["read_receipt_at"] == (SENT_AT if read else None)
    events = db.execute("SELECT type FROM procrastinate_events WHERE job_id = %s ORDER BY id", [job]).fetchall()
    assert [e["type"] for e in events][-1:] == ["succeeded"]

    # a record made again (its first answer lost with the connection) ends nothing more
    assert record(db, send, read, **end.params()) == {"recorded": True, "job_ended": False}
    assert job_row(db, job) == ended


@pytest.mark.parametrize("status", ["todo", "succeeded", "failed", None])
def test_a_job_not_running_is_left_alone_and_the_send_recorded_all_the_same(
    db: psycopg.Connection, status: str | None
) -> None:
    """The sweep took the job back ('todo'), or something else ended it; or the send runs under no
    JobEnd (None): the record is made, and the job is procrastinate's to end."""
    send = a_send(db)
    job, worker = a_job(db, status or "doing")
    before = job_row(db, job)
    params = job_end.JobEnd(job, worker, delete=False).params() if status else {}
    assert record(db, send, **params) == {"recorded": True, "job_ended": False}
    assert job_row(db, job) == before
    assert db.execute("SELECT status FROM messages WHERE id = %s", [send["reply"]]).fetchone()["status"] == "sent"


def test_a_job_another_worker_runs_now_is_left_to_it(db: psycopg.Connection) -> None:
    """The sweep took the job back from a worker it judged dead, and another took it: the first
    worker's late record ends nothing (the other's run finds the send recorded and ends the job)."""
    send, (job, first) = a_send(db), a_job(db, "doing")
    db.execute("UPDATE procrastinate_jobs SET worker_id = %s WHERE id = %s", [a_worker(db), job])
    before = job_row(db, job)
    assert record(db, send, **job_end.JobEnd(job, first, delete=False).params()) == {
        "recorded": True,
        "job_ended": False,
    }
    assert job_row(db, job) == before


def test_a_worker_deleting_succeeded_jobs_has_its_job_deleted(db: psycopg.Connection) -> None:
    send, (job, worker) = a_send(db), a_job(db, "doing")
    assert record(db, send, **job_end.JobEnd(job, worker, delete=True).params())["job_ended"] is True
    assert job_row(db, job) is None


async def run_one_job(
    database_url: str, settings: Settings, after_record: BaseException | None
) -> tuple[int, dict[str, int]]:
    """One job through a real WaypostWorker whose task records a send as worker.sending does, then
    returns, or raises `after_record`. The job's id and the send, once the worker has stopped."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        send = a_send(db)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
    pool = create_pool(settings, name="test-job-end")
    ran = asyncio.Event()

    @app.task(name="record_a_send", pass_context=True)
    async def record_a_send(context: procrastinate.JobContext) -> None:
        try:
            await sending._record(pool, send["reply"], "wamid.out", None, job_end.of(context))
        finally:
            ran.set()
        if after_record is not None:
            raise after_record

    await pool.open(wait=True)
    try:
        async with app.open_async():
            job = await record_a_send.defer_async()
            # stopped as the block ends: every job's end persisted (or skipped) before that returns
            async with running_worker(app, concurrency=1, poll=30):
                await asyncio.wait_for(ran.wait(), timeout=20)
    finally:
        await pool.close()
    return job, send


async def test_a_job_its_record_ended_is_not_ended_again(
    database_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    job, send = await run_one_job(database_url, settings, after_record=None)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        ended = job_row(db, job)
        events = db.execute(
            "SELECT type, xmin::text AS xid FROM procrastinate_events WHERE job_id = %s AND type = 'succeeded'", [job]
        ).fetchall()
        reply = db.execute("SELECT status, xmin::text AS xid FROM messages WHERE id = %s", [send["reply"]]).fetchone()
    assert ended is not None and (ended["status"], ended["attempts"]) == ("succeeded", 1)
    # ended once, by the record's transaction (the job's row itself changes again as the worker leaves)
    assert reply["status"] == "sent" and [e["xid"] for e in events] == [reply["xid"]]
    # procrastinate's own finish would have found it no longer 'doing' and said so
    assert not [r for r in caplog.records if "could not be recorded" in r.getMessage()]


async def test_a_task_failing_after_its_record_ended_its_job_leaves_it_succeeded(
    database_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Its send was recorded: the job is not retried, and the error is said, with its job."""
    caplog.set_level(logging.WARNING)
    job, _ = await run_one_job(database_url, settings, after_record=ValueError("after the record"))
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        ended = job_row(db, job)
    assert ended is not None and (ended["status"], ended["attempts"]) == ("succeeded", 1)
    [warning] = [r for r in caplog.records if "with its send's record" in r.getMessage()]
    assert "its later status (failed) is not recorded" in warning.getMessage()
