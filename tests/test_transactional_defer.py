"""The outbound_jobs row and the procrastinate job commit or vanish together."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from tests import payloads
from waypost.db import create_pool
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


async def test_rollback_after_the_defer_leaves_neither_job_row_nor_queue_row(
    settings: Settings, db: psycopg.Connection
) -> None:
    event_id = db.execute(
        "INSERT INTO webhook_events (request_id, signature) VALUES ('r1', 'valid') RETURNING id"
    ).fetchone()["id"]
    # The second message violates NOT NULL after the first one's job was deferred.
    batch = Batch(messages=[inbound("wamid.a"), inbound("wamid.b", message_type=None)])
    async with create_pool(settings) as pool:
        with pytest.raises(psycopg.errors.NotNullViolation):
            await ingest.process(pool, event_id, batch, "r1")
    assert counts(db) == (0, 0, 0)
    assert db.execute("SELECT processed_at FROM webhook_events").fetchone()["processed_at"] is None


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
