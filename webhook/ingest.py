"""Writes a webhook to the database: the journal row first, then every item in one transaction."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from waypost.db import fetchone
from waypost.sql import query
from webhook.payload import Batch, InboundMessage
from webhook.signature import Verdict
from worker.reply import conversation_lock, send_reply

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class IngestResult:
    new_messages: int = 0
    duplicate_messages: int = 0
    jobs: int = 0
    statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def summary(self) -> dict[str, object]:
        return {
            "messages": self.new_messages,
            "duplicates": self.duplicate_messages,
            "jobs": self.jobs,
            "statuses": dict(self.statuses),
        }


async def journal(
    pool: AsyncConnectionPool,
    request_id: str,
    body: bytes | None,
    signature: Verdict,
    error: str | None = None,
) -> int:
    """Commit the raw body on its own, so it survives whatever happens next."""
    async with pool.connection() as conn:
        row = await fetchone(
            conn, "webhook_event_insert", request_id=request_id, body=body, signature=signature, error=error
        )
        assert row is not None
        return int(row["id"])


async def record_error(pool: AsyncConnectionPool, event_id: int, error: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(query("webhook_event_error"), {"id": event_id, "error": error})


def _lock_order(message: InboundMessage) -> tuple[str, str, str, float]:
    # One order for every request: concurrent batches lock conversations without deadlocking,
    # and messages of one conversation get their jobs (hence their replies) in send order.
    return (message.phone_number_id, message.wa_id or "", message.user_id or "", message.contact_sent_at.timestamp())


async def process(pool: AsyncConnectionPool, event_id: int, batch: Batch, request_id: str) -> IngestResult:
    result = IngestResult()
    async with pool.connection() as conn, conn.transaction():
        for message in sorted(batch.messages, key=_lock_order):
            await _ingest_message(conn, message, request_id, result)
        for status in sorted(batch.statuses, key=lambda s: (s.wa_message_id, s.status)):
            row = await fetchone(
                conn,
                "apply_message_status",
                wa_message_id=status.wa_message_id,
                status=status.status,
                status_at=status.status_at,
                recipient_id=status.recipient_id,
                callback_data=status.callback_data,
                errors=Jsonb(status.errors) if status.errors is not None else None,
                payload=Jsonb(status.payload),
            )
            assert row is not None
            result.statuses[row["outcome"]] += 1
            logger.info("status %s for %s: %s", status.status, status.wa_message_id, row["outcome"])
        for platform_error in batch.errors:
            await conn.execute(
                query("notification_insert"),
                {
                    "conversation_id": None,
                    "message_id": None,
                    "kind": "platform_error",
                    "body": f"WhatsApp reported an error for number {platform_error.phone_number_id}: "
                    + json.dumps(platform_error.error, ensure_ascii=False),
                },
            )
        await conn.execute(query("webhook_event_processed"), {"id": event_id})
    return result


async def _ingest_message(
    conn: AsyncConnection, message: InboundMessage, request_id: str, result: IngestResult
) -> None:
    row = await fetchone(
        conn,
        "ingest_inbound_message",
        phone_number_id=message.phone_number_id,
        wa_id=message.wa_id,
        user_id=message.user_id,
        parent_user_id=message.parent_user_id,
        username=message.username,
        contact_name=message.contact_name,
        new_wa_id=message.new_wa_id,
        new_user_id=message.new_user_id,
        wa_message_id=message.wa_message_id,
        type=message.type,
        body=message.body,
        payload=Jsonb(message.payload),
        contact_sent_at=message.contact_sent_at,
        needs_reply=message.needs_reply,
        request_id=request_id,
    )
    assert row is not None
    if not row["created"]:
        result.duplicate_messages += 1
        logger.info("duplicate message %s ignored", message.wa_message_id)
        return
    result.new_messages += 1
    outbound_job_id = row["outbound_job_id"]
    if outbound_job_id is None:
        logger.info("stored message %s type=%s, no reply due", message.wa_message_id, message.type)
        return
    # Same connection, same transaction: the job row and the queue row commit or vanish together,
    # and procrastinate's NOTIFY fires at our COMMIT.
    procrastinate_job_id = await send_reply.configure(
        connection=conn, lock=conversation_lock(row["conversation_id"])
    ).defer_async(outbound_job_id=outbound_job_id, request_id=request_id)
    await conn.execute(
        query("outbound_job_set_procrastinate_id"),
        {
            "outbound_job_id": outbound_job_id,
            "procrastinate_job_id": procrastinate_job_id,
        },
    )
    result.jobs += 1
    logger.info(
        "stored message %s, outbound job %s deferred as procrastinate job %s",
        message.wa_message_id,
        outbound_job_id,
        procrastinate_job_id,
    )
