"""The outbound_jobs row and the procrastinate job commit or vanish together."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from waypost.db import create_pool
from waypost.devtools import payloads
from waypost.settings import Settings
from webhook import ingest
from webhook.payload import Batch, InboundMessage, parse
from worker.reply import send_reply


def counts(db: psycopg.Connection) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM outbound_jobs) AS j,"
        " (SELECT count(*) FROM procrastinate_jobs) AS q"
    ).fetchone()
    return row["m"], row["j"], row["q"]


def inbound(wamid: str, message_type: str | None = "text") -> InboundMessage:
    return InboundMessage(
        phone_number_id="106540352242922",
        wa_id="16505551234",
        user_id=None,
        parent_user_id=None,
        username=None,
        contact_name="Sheena",
        wa_message_id=wamid,
        type=message_type,  # type: ignore[arg-type]
        body="hello",
        contact_sent_at=dt.datetime.now(dt.UTC),
        payload={},
    )


def fail_after_the_defer_of(db: psycopg.Connection, wamid: str, errcode: str) -> None:
    """A trigger that fails the linking of `wamid`'s job to its procrastinate job: after the defer.
    The common webhook writes the link in the outbound job's insert, the general path in an update."""
    db.execute(
        f"""
        CREATE FUNCTION test_fail_link() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.procrastinate_job_id IS NOT NULL
               AND (SELECT wa_message_id FROM messages WHERE id = NEW.inbound_message_id) = '{wamid}' THEN
                RAISE EXCEPTION 'refused after the defer' USING ERRCODE = '{errcode}';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER test_fail_link BEFORE INSERT OR UPDATE ON outbound_jobs
            FOR EACH ROW EXECUTE FUNCTION test_fail_link();
        """
    )


def journal_row(db: psycopg.Connection) -> int:
    return db.execute(
        "INSERT INTO webhook_events (request_id, signature) VALUES ('r1', 'valid') RETURNING id"
    ).fetchone()["id"]


async def test_rollback_after_the_defer_leaves_neither_job_row_nor_queue_row(
    settings: Settings, db: psycopg.Connection
) -> None:
    # An unclassified error (XX000, internal) after the second message's defer: the whole batch goes.
    fail_after_the_defer_of(db, "wamid.b", "XX000")
    event_id = journal_row(db)
    batch = Batch(messages=[inbound("wamid.a"), inbound("wamid.b")])
    async with create_pool(settings) as pool:
        with pytest.raises(psycopg.errors.InternalError_):
            await ingest.process(pool, event_id, batch, "r1")
    assert counts(db) == (0, 0, 0)
    assert db.execute("SELECT processed_at FROM webhook_events").fetchone()["processed_at"] is None


async def test_a_refused_item_leaves_no_job_and_does_not_sink_its_batch(
    settings: Settings, db: psycopg.Connection
) -> None:
    # The database refuses one item's values (22000, data exception) after its job was deferred: its
    # savepoint takes back the message, the job row and the queue row; the other item is stored whole.
    fail_after_the_defer_of(db, "wamid.b", "22000")
    event_id = journal_row(db)
    batch = Batch(messages=[inbound("wamid.a"), inbound("wamid.b"), inbound("wamid.c", message_type=None)])
    async with create_pool(settings) as pool:
        result = await ingest.process(pool, event_id, batch, "r1")
    assert counts(db) == (1, 1, 1)
    assert db.execute("SELECT wa_message_id FROM messages").fetchone()["wa_message_id"] == "wamid.a"
    job = db.execute("SELECT procrastinate_job_id FROM outbound_jobs").fetchone()
    assert db.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s", [job["procrastinate_job_id"]]).fetchone()
    assert [(r.item, r.id) for r in result.refused] == [("message", "wamid.b"), ("message", "wamid.c")]
    event = db.execute("SELECT processed_at, error FROM webhook_events").fetchone()
    assert event["processed_at"] is not None
    assert "wamid.b" in event["error"] and "NotNullViolation" in event["error"]
    note = db.execute("SELECT kind, body FROM notifications").fetchone()
    assert note["kind"] == "webhook_item_refused" and "wamid.c" in note["body"]


async def test_defer_on_our_connection_follows_our_transaction(settings: Settings, db: psycopg.Connection) -> None:
    async with create_pool(settings) as pool, pool.connection() as conn:
        async with conn.transaction(force_rollback=True):
            await send_reply.configure(connection=conn).defer_async(outbound_job_id=1, request_id="x")
            assert counts(db) == (0, 0, 0)  # not visible before commit
        assert counts(db) == (0, 0, 0)
        async with conn.transaction():
            job_id = await send_reply.configure(connection=conn).defer_async(outbound_job_id=1, request_id="x")
    assert db.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", [job_id]).fetchone()["status"] == "todo"


async def test_nul_characters_are_stored_not_refused(settings: Settings, db: psycopg.Connection) -> None:
    batch = parse(payloads.dumps(payloads.inbound(payloads.text_message("a\u0000b"))))
    event_id = db.execute(
        "INSERT INTO webhook_events (request_id, signature) VALUES ('r2', 'valid') RETURNING id"
    ).fetchone()["id"]
    async with create_pool(settings) as pool:
        await ingest.process(pool, event_id, batch, "r2")
    assert db.execute("SELECT body FROM messages").fetchone()["body"] == "a\ufffdb"
