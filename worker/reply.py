"""The reply task: one run answers one inbound message, through one outbound_jobs row.

The send itself is guarded by SQL (waypost_claim_send_v1): whatever runs this task, however often,
at most one claim for a message's idempotency key is live at a time, and a recorded send ends it.
Each stage logs a fixed phrase with request_id, job_id and the elapsed milliseconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import procrastinate
import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from waypost.db import fetchone
from waypost.logs import log_context
from waypost.sql import query
from worker.graph import SendFailed
from worker.orchestrator import OrchestratorError, ReplyRequest, Turn
from worker.queue import REPLY_QUEUE, app
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision, RetryLater, may_retry, retry_delay

logger = logging.getLogger(__name__)

WINDOW = dt.timedelta(hours=24)


def conversation_lock(conversation_id: int) -> str:
    """procrastinate lock serialising the replies of one conversation, in inbound order."""
    return f"conversation:{conversation_id}"


def idempotency_key(inbound_wa_message_id: str) -> str:
    """One reply per inbound message; also sent as biz_opaque_callback_data (max 512 chars)."""
    return f"reply:{inbound_wa_message_id}"[:512]


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def log(self, stage: str, detail: str = "", level: int = logging.INFO) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        logger.log(level, "%s elapsed_ms=%.1f %s", stage, elapsed, detail)


def skip_reason(conversation: dict[str, Any], margin_seconds: float) -> str | None:
    if conversation["deleted_at"] is not None:
        return "conversation deleted"
    if not conversation["ai_enabled"]:
        return "AI disabled for this conversation"
    last_inbound = conversation["last_inbound_at"]
    closes = last_inbound + WINDOW - dt.timedelta(seconds=margin_seconds) if last_inbound else None
    if closes is None or dt.datetime.now(dt.UTC) >= closes:
        return "outside the 24-hour customer service window"
    return None


@app.task(name="send_reply", queue=REPLY_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def send_reply(context: procrastinate.JobContext, outbound_job_id: int, request_id: str) -> None:
    connector = context.app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    with log_context(request_id=request_id, job_id=context.job.id):
        reply = ReplyRun(resources_of(context), connector.pool, outbound_job_id)
        try:
            await reply.run()
        except RetryLater as retry:
            reply.clock.log("job retry", str(retry), logging.WARNING)
            raise
        except psycopg.OperationalError as exc:
            # The database went away mid-run (restart, failover): run again shortly, within bounds.
            if (context.job.attempts or 0) >= 2 * reply.settings.reply_max_attempts:
                reply.clock.log("job failed", f"database unavailable: {exc}", logging.ERROR)
                raise
            reply.clock.log("job retry", f"database unavailable: {exc}", logging.WARNING)
            raise RetryLater("database unavailable", 5.0) from exc
        except Exception:
            reply.clock.log("job failed", "unexpected error; the sweep runs it again", logging.ERROR)
            raise


class ReplyRun:
    def __init__(self, resources: WorkerResources, pool: AsyncConnectionPool, outbound_job_id: int) -> None:
        self.settings = resources.settings
        self.resources = resources
        self.pool = pool
        self.outbound_job_id = outbound_job_id
        self.clock = Stopwatch()
        self.job: dict[str, Any] = {}  # the outbound_jobs row, once this run has started it

    async def run(self) -> None:
        async with self.pool.connection() as conn:
            job = await fetchone(conn, "outbound_job_start", outbound_job_id=self.outbound_job_id)
            if job is None:
                self.clock.log("picked job", f"outbound_job_id={self.outbound_job_id} already finished")
                return
            self.job = job
            self.clock.log("picked job", f"outbound_job_id={self.outbound_job_id} attempt={job['attempts']}")
            conversation = await fetchone(conn, "reply_load_conversation", conversation_id=job["conversation_id"])
            assert conversation is not None
            self.clock.log("loaded conversation", f"conversation_id={conversation['id']}")
            inbound = await fetchone(conn, "reply_load_message", message_id=job["inbound_message_id"])
            assert inbound is not None
            self.clock.log("loaded inbound message", f"wa_message_id={inbound['wa_message_id']}")
            key = idempotency_key(inbound["wa_message_id"])
            existing = await fetchone(conn, "reply_find_send", idempotency_key=key)

        if existing is not None:
            body = existing["body"]  # a retry resends the text already decided, never a new one
        else:
            reason = skip_reason(conversation, self.settings.window_margin_seconds)
            if reason:
                await self.finish("skipped", skip_reason=reason)
                self.clock.log("job done", f"skipped: {reason}")
                return
            body = await self.ask_orchestrator(conversation, inbound)
            if body is None:
                return
        await self.claim_and_send(conversation, inbound, key, body)

    async def finish(self, status: str, *, last_error: str | None = None, skip_reason: str | None = None) -> None:
        async with self.pool.connection() as conn:
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

    async def notify(self, conn: AsyncConnection, conversation_id: int, kind: str, body: str) -> None:
        await conn.execute(
            query("notification_insert"),
            {"conversation_id": conversation_id, "message_id": None, "kind": kind, "body": body},
        )

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
        try:
            answer = await orchestrator.reply(request)
        except OrchestratorError as exc:
            self.clock.log("orchestrator end", f"failed: {exc}", logging.WARNING)
            await self.retry_or_fail(f"orchestrator failed: {exc}", conversation_id=conversation["id"])
            return None
        self.clock.log("orchestrator end", f"chars={len(answer) if answer else 0}")
        if answer is None:
            async with self.pool.connection() as conn, conn.transaction():
                await self.notify(
                    conn, conversation["id"], "ai_no_reply", "The AI had no answer for a message; it needs a person."
                )
                await conn.execute(
                    query("outbound_job_finish"),
                    {
                        "outbound_job_id": self.outbound_job_id,
                        "status": "skipped",
                        "last_error": None,
                        "skip_reason": "the orchestrator had no reply",
                    },
                )
            self.clock.log("job done", "skipped: the orchestrator had no reply")
        return answer[:4096] if answer else None

    async def retry_or_fail(
        self,
        reason: str,
        *,
        conversation_id: int,
        retry_after: float | None = None,
        code: int | None = None,
        message_id: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        """Raise RetryLater while the retry budget lasts; else fail the job, telling the operator."""
        attempts = self.job["attempts"]
        delay = retry_delay(self.settings, attempts, retry_after, code)
        if may_retry(self.settings, attempts, self.job["created_at"], delay):
            await self.note(reason)
            raise RetryLater(reason, delay)
        final = f"gave up after {attempts} attempt(s): {reason}"
        async with self.pool.connection() as conn, conn.transaction():
            if message_id is not None:
                await conn.execute(
                    query("fail_send"), {"message_id": message_id, "errors": Jsonb(errors), "reason": final}
                )
            else:
                await self.notify(conn, conversation_id, "ai_failed", f"No reply was sent: {final}")
                await conn.execute(
                    query("outbound_job_finish"),
                    {
                        "outbound_job_id": self.outbound_job_id,
                        "status": "failed",
                        "last_error": final,
                        "skip_reason": None,
                    },
                )
        self.clock.log("job failed", final, logging.ERROR)

    async def claim_and_send(self, conversation: dict[str, Any], inbound: dict[str, Any], key: str, body: str) -> None:
        async with self.pool.connection() as conn:
            claim = await fetchone(
                conn,
                "claim_send",
                conversation_id=conversation["id"],
                idempotency_key=key,
                author="ai",
                body=body,
                reply_to_message_id=inbound["id"],
                stale_after=self.settings.sending_stale_after,
                grace=self.settings.unknown_grace_seconds,
            )
        assert claim is not None
        outcome, message_id = claim["outcome"], claim["message_id"]
        if outcome == "already_sent":
            await self.finish("done")
            self.clock.log("job done", f"message {message_id} was already sent")
            return
        if outcome == "failed":
            await self.finish("failed", last_error="the reply's send had already failed")
            self.clock.log("job failed", f"message {message_id} had already failed")
            return
        if outcome == "in_progress":
            self.clock.log("send skipped", f"message {message_id}: another attempt is in flight")
            return
        if outcome == "awaiting_status":
            await self.note("send outcome unknown: waiting for a status webhook or the grace period")
            self.clock.log("send skipped", f"message {message_id}: outcome unknown, awaiting a status webhook")
            return
        if outcome == "resend":
            logger.warning(
                "resending message %s: no status arrived within the grace period. At-least-once: if the "
                "first attempt was delivered after all, the contact receives this reply twice",
                message_id,
            )
        await self.send(conversation, inbound, key, claim["body"], message_id, claim["send_attempts"])

    async def send(
        self,
        conversation: dict[str, Any],
        inbound: dict[str, Any],
        key: str,
        body: str,
        message_id: int,
        send_attempt: int,
    ) -> None:
        self.clock.log("send start", f"message_id={message_id} send_attempt={send_attempt}")
        try:
            wa_message_id = await self.resources.graph.send_text(
                phone_number_id=conversation["phone_number_id"],
                wa_id=conversation["wa_id"],
                user_id=conversation["user_id"],
                body=body,
                context_message_id=inbound["wa_message_id"],
                callback_data=key,
            )
        except SendFailed as failure:
            self.clock.log("send end", f"{failure.kind}: {failure}", logging.WARNING)
            await self.handle_failure(conversation, message_id, failure)
            return
        self.clock.log("send end", f"wa_message_id={wa_message_id}")
        await self.record(message_id, wa_message_id)
        self.clock.log("message row confirmed", f"message_id={message_id} wa_message_id={wa_message_id}")
        self.clock.log("job done", f"outbound_job_id={self.outbound_job_id}")

    async def record(self, message_id: int, wa_message_id: str) -> None:
        # Meta accepted the message: insist on writing that down. If the database stays away, the
        # 'sent' status webhook (carrying our key) records it instead.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(psycopg.OperationalError),
            stop=stop_after_attempt(5),
            wait=wait_fixed(1),
            reraise=True,
        ):
            with attempt:
                async with self.pool.connection() as conn:
                    await conn.execute(
                        query("record_send"),
                        {"message_id": message_id, "wa_message_id": wa_message_id, "sent_at": dt.datetime.now(dt.UTC)},
                    )

    async def handle_failure(self, conversation: dict[str, Any], message_id: int, failure: SendFailed) -> None:
        if failure.kind == "ambiguous":
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(query("mark_send_unknown"), {"message_id": message_id})
                await conn.execute(
                    query("outbound_job_note"),
                    {"outbound_job_id": self.outbound_job_id, "last_error": f"send outcome unknown: {failure}"},
                )
            self.clock.log(
                "send unknown",
                f"message {message_id}: not resent now; a status webhook or the "
                "sweep after the grace period resolves it",
                logging.WARNING,
            )
            return
        if failure.kind == "retryable":
            async with self.pool.connection() as conn:
                await conn.execute(
                    query("release_send"), {"message_id": message_id, "errors": Jsonb(failure.as_errors())}
                )
            await self.retry_or_fail(
                str(failure),
                conversation_id=conversation["id"],
                retry_after=failure.retry_after,
                code=failure.code,
                message_id=message_id,
                errors=failure.as_errors(),
            )
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                query("fail_send"),
                {
                    "message_id": message_id,
                    "errors": Jsonb(failure.as_errors()),
                    "reason": f"permanent error: {failure}",
                },
            )
        self.clock.log("job failed", f"permanent error: {failure}", logging.ERROR)
