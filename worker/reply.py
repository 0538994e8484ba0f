"""The reply task: one run answers one inbound message, through one outbound_jobs row.

The send goes through worker.sending, shared with operator messages. Each stage logs a fixed
phrase with request_id, job_id and the elapsed milliseconds.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import procrastinate
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from waypost import metrics
from waypost.db import fetchone
from waypost.sql import query
from waypost.text import clean_text
from worker.orchestrator import OrchestratorError, ReplyRequest, Turn
from worker.queue import REPLY_QUEUE, app
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision
from worker.sending import SendRun, run_send_task, unexpected_error

logger = logging.getLogger(__name__)

WINDOW = dt.timedelta(hours=24)

# Why an AI reply was skipped, and what the operator is told about it (other reasons: nothing).
AI_PAUSED = "AI disabled for this conversation"
WINDOW_CLOSED = "outside the 24-hour customer service window"
NO_ANSWER = "the orchestrator had no reply"
SKIP_NOTIFICATIONS = {
    NO_ANSWER: ("ai_no_reply", "The AI had no answer for a message; it needs a person."),
    AI_PAUSED: ("operator_needed", "A new message arrived while the AI is paused: it waits for an operator."),
    WINDOW_CLOSED: (
        "window_closed",
        "A message could not be answered inside the 24-hour window; only a template message can reach the contact now.",
    ),
}


def conversation_lock(conversation_id: int) -> str:
    """procrastinate lock serialising the sends of one conversation, in order."""
    return f"conversation:{conversation_id}"


def idempotency_key(inbound_wa_message_id: str) -> str:
    """One reply per inbound message; also sent as biz_opaque_callback_data (max 512 chars)."""
    return f"reply:{inbound_wa_message_id}"[:512]


def skip_reason(conversation: dict[str, Any], margin_seconds: float) -> str | None:
    if conversation["deleted_at"] is not None:
        return "conversation deleted"
    if not conversation["ai_enabled"]:
        return AI_PAUSED
    last_inbound = conversation["last_inbound_at"]
    closes = last_inbound + WINDOW - dt.timedelta(seconds=margin_seconds) if last_inbound else None
    if closes is None or dt.datetime.now(dt.UTC) >= closes:
        return WINDOW_CLOSED
    return None


@app.task(name="send_reply", queue=REPLY_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def send_reply(context: procrastinate.JobContext, outbound_job_id: int, request_id: str) -> None:
    connector = context.app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    await run_send_task(context, ReplyRun(resources_of(context), connector.pool, outbound_job_id), request_id)


class ReplyRun(SendRun):
    def __init__(self, resources: WorkerResources, pool: AsyncConnectionPool, outbound_job_id: int) -> None:
        super().__init__(resources, pool)
        self.outbound_job_id = outbound_job_id
        self.inbound_at: dt.datetime | None = None  # when the message answered was stored

    async def run(self) -> None:
        async with self.pool.connection() as conn:
            job = await fetchone(conn, "outbound_job_start", outbound_job_id=self.outbound_job_id)
            if job is None:
                self.clock.log("picked job", f"outbound_job_id={self.outbound_job_id} already finished")
                return
            self.attempts, self.first_seen = job["attempts"], job["created_at"]
            self.clock.log("picked job", f"outbound_job_id={self.outbound_job_id} attempt={job['attempts']}")
            conversation = await fetchone(conn, "reply_load_conversation", conversation_id=job["conversation_id"])
            assert conversation is not None
            self.clock.log("loaded conversation", f"conversation_id={conversation['id']}")
            inbound = await fetchone(conn, "reply_load_message", message_id=job["inbound_message_id"])
            assert inbound is not None
            self.inbound_at = inbound["created_at"]
            self.clock.log("loaded inbound message", f"wa_message_id={inbound['wa_message_id']}")
            key = idempotency_key(inbound["wa_message_id"])
            existing = await fetchone(conn, "reply_find_send", idempotency_key=key)

        if existing is not None:
            body = existing["body"]  # a retry resends the text already decided, never a new one
        else:
            reason = skip_reason(conversation, self.settings.window_margin_seconds)
            if reason:
                await self.skip(conversation["id"], reason)
                return
            body = await self.ask_orchestrator(conversation, inbound)
            if body is None:
                return
        await self.claim_and_send(conversation, key=key, body=body, author="ai", reply_to=inbound)

    def ended(self, state: str) -> None:
        metrics.REPLY_JOBS.labels(state).inc()
        metrics.REPLY_ATTEMPTS.observe(self.attempts)
        if state == "done" and self.inbound_at is not None:
            metrics.REPLY_SECONDS.observe((dt.datetime.now(dt.UTC) - self.inbound_at).total_seconds())

    async def skip(self, conversation_id: int, reason: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            if reason in SKIP_NOTIFICATIONS:
                kind, body = SKIP_NOTIFICATIONS[reason]
                await self.notify(conn, conversation_id, kind, body)
            await self.close_job(conn, "skipped", skip_reason=reason)
        self.ended("skipped")
        self.clock.log("job done", f"skipped: {reason}")

    async def finish(self, status: str, *, last_error: str | None = None, skip_reason: str | None = None) -> None:
        async with self.pool.connection() as conn:
            await self.close_job(conn, status, last_error=last_error, skip_reason=skip_reason)

    async def close_job(
        self, conn: AsyncConnection, status: str, *, last_error: str | None = None, skip_reason: str | None = None
    ) -> None:
        """Close the outbound job on `conn`, inside the caller's transaction."""
        await conn.execute(
            query("outbound_job_finish"),
            {
                "outbound_job_id": self.outbound_job_id,
                "status": status,
                "last_error": last_error,
                "skip_reason": skip_reason,
            },
        )

    async def note(self, last_error: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                query("outbound_job_note"), {"outbound_job_id": self.outbound_job_id, "last_error": last_error}
            )

    async def give_up(self, conn: AsyncConnection, conversation_id: int, reason: str) -> None:
        await self.notify(conn, conversation_id, "ai_failed", f"No reply was sent: {reason}")
        await self.close_job(conn, "failed", last_error=reason)

    async def abandon(self, reason: str) -> None:
        params = {"outbound_job_id": self.outbound_job_id, "reason": reason}
        async with self.pool.connection() as conn, conn.transaction():
            # A claimed send fails with its message (waypost_fail_send_v1 closes the job too).
            errors = Jsonb([unexpected_error(reason)])
            await conn.execute(query("reply_fail_claimed_send"), {**params, "errors": errors})
            await conn.execute(query("outbound_job_give_up"), params)

    async def ask_orchestrator(self, conversation: dict[str, Any], inbound: dict[str, Any]) -> str | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                query("reply_history"),
                {
                    "conversation_id": conversation["id"],
                    "message_id": inbound["id"],
                    "limit": self.settings.history_messages,
                },
            )
            history = tuple(Turn(row["author"], row["body"]) for row in reversed(await cursor.fetchall()))
        orchestrator = self.resources.orchestrator
        self.clock.log("orchestrator start", f"provider={orchestrator.name} history={len(history)}")
        request = ReplyRequest(conversation["id"], conversation["contact_name"], history)
        timer = metrics.Timer()
        try:
            answer = await orchestrator.reply(request)
        except OrchestratorError as exc:
            metrics.ORCHESTRATOR_FAILURES.labels(orchestrator.name).inc()
            self.clock.log("orchestrator end", f"failed: {exc}", logging.WARNING)
            await self.retry_or_fail(f"orchestrator failed: {exc}", conversation_id=conversation["id"])
            return None
        metrics.ORCHESTRATOR_SECONDS.labels(orchestrator.name).observe(timer.seconds)
        # The model's text is outside input: a NUL or a lone surrogate would fail every write of it.
        answer = clean_text(answer) if answer else None
        text = f" text={answer!r}" if answer and self.settings.log_bodies else ""
        self.clock.log("orchestrator end", f"chars={len(answer) if answer else 0}{text}")
        if answer is None:
            await self.skip(conversation["id"], NO_ANSWER)
        return answer[:4096] if answer else None
