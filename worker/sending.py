"""Claim, send, record: the one path every outbound message takes, AI reply or operator message.

The send itself is guarded by SQL (waypost_claim_send_v1): whatever runs a send, however often, at
most one claim for a message's idempotency key is live at a time, and a recorded send ends it.
Subclasses say what finishing, noting and giving up mean for the job they run.
"""

from __future__ import annotations

import contextlib
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

from waypost import metrics
from waypost.db import fetchone
from waypost.logs import log_context
from waypost.sql import query
from waypost.text import clean_text
from worker.graph import SendFailed
from worker.resources import WorkerResources
from worker.retry import RetryLater, may_retry, retry_delay

logger = logging.getLogger(__name__)


class Stopwatch:
    def __init__(self, stage_logger: logging.Logger) -> None:
        self.started = time.perf_counter()
        self.logger = stage_logger

    def log(self, stage: str, detail: str = "", level: int = logging.INFO) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        self.logger.log(level, "%s elapsed_ms=%.1f %s", stage, elapsed, detail)


async def run_send_task(context: procrastinate.JobContext, run: SendRun, request_id: str) -> None:
    """Run a send job with its log context. A lost database is a bounded retry; so is any error
    nobody classified, after which the job fails and the operators are told: never left running."""
    with log_context(request_id=request_id, job_id=context.job.id):
        try:
            await run.run()
        except RetryLater as retry:
            run.clock.log("job retry", str(retry), logging.WARNING)
            raise
        except psycopg.OperationalError as exc:
            # The database went away mid-run (restart, failover): run again shortly, within bounds.
            if (context.job.attempts or 0) >= 2 * run.settings.reply_max_attempts:
                run.clock.log("job failed", f"database unavailable: {exc}", logging.ERROR)
                raise
            run.clock.log("job retry", f"database unavailable: {exc}", logging.WARNING)
            raise RetryLater("database unavailable", 5.0) from exc
        except Exception as exc:
            logger.exception("unexpected error in %s", context.job.call_string)
            reason = clean_text(f"unexpected error: {type(exc).__name__}: {exc}")[:1000]
            attempts = max(run.attempts, (context.job.attempts or 0) + 1)
            delay = retry_delay(run.settings, attempts)
            if may_retry(run.settings, attempts, run.first_seen, delay):
                run.clock.log("job retry", f"{reason} (retry in {delay:.1f}s)", logging.WARNING)
                with contextlib.suppress(psycopg.Error):  # the job's row says why, if it can
                    await run.note(reason)
                raise RetryLater(reason, delay) from exc
            await run.abandon(f"gave up after {attempts} attempt(s): {reason}")
            run.ended("failed")
            run.clock.log("job failed", reason, logging.ERROR)


def unexpected_error(reason: str) -> dict[str, Any]:
    """The `error` a message gets when Waypost itself, not Meta, could not send it."""
    return {"title": "Waypost could not send this message", "message": reason}


class SendRun:
    def __init__(self, resources: WorkerResources, pool: AsyncConnectionPool) -> None:
        self.settings = resources.settings
        self.resources = resources
        self.pool = pool
        # stage lines name the task's module: worker.reply, worker.operator_send
        self.clock = Stopwatch(logging.getLogger(type(self).__module__))
        # the retry budget: attempts so far, and when the work was first asked for
        self.attempts = 0
        self.first_seen = dt.datetime.now(dt.UTC)

    async def run(self) -> None:
        raise NotImplementedError

    async def finish(self, status: str, *, last_error: str | None = None, skip_reason: str | None = None) -> None:
        """The job is over: done, failed or skipped."""

    async def note(self, last_error: str) -> None:
        """The job is not over; say why."""

    async def give_up(self, conn: AsyncConnection, conversation_id: int, reason: str) -> None:
        """No retry is left and no message row exists to fail."""

    async def abandon(self, reason: str) -> None:
        """An error nobody classified, out of retries: fail the job and its message, tell the operators."""

    def ended(self, state: str) -> None:
        """The job reached a final state: done, failed or skipped."""

    def claimed(self, send_attempts: int) -> None:
        """This run may call the Graph API; `send_attempts` counts that call."""

    async def notify(self, conn: AsyncConnection, conversation_id: int, kind: str, body: str) -> None:
        await conn.execute(
            query("notification_insert"),
            {"conversation_id": conversation_id, "message_id": None, "kind": kind, "body": body},
        )

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
        """Raise RetryLater while the retry budget lasts; else fail, telling the operator."""
        delay = retry_delay(self.settings, self.attempts, retry_after, code)
        if may_retry(self.settings, self.attempts, self.first_seen, delay):
            await self.note(reason)
            raise RetryLater(reason, delay)
        final = f"gave up after {self.attempts} attempt(s): {reason}"
        async with self.pool.connection() as conn, conn.transaction():
            if message_id is not None:
                await conn.execute(
                    query("fail_send"), {"message_id": message_id, "errors": Jsonb(errors), "reason": final}
                )
            else:
                await self.give_up(conn, conversation_id, final)
        self.ended("failed")
        self.clock.log("job failed", final, logging.ERROR)

    async def claim_and_send(
        self,
        conversation: dict[str, Any],
        *,
        key: str,
        body: str,
        author: str,
        reply_to: dict[str, Any] | None,
    ) -> None:
        async with self.pool.connection() as conn:
            claim = await fetchone(
                conn,
                "claim_send",
                conversation_id=conversation["id"],
                idempotency_key=key,
                author=author,
                body=body,
                reply_to_message_id=reply_to["id"] if reply_to else None,
                stale_after=self.settings.sending_stale_after,
                grace=self.settings.unknown_grace_seconds,
            )
        assert claim is not None
        outcome, message_id = claim["outcome"], claim["message_id"]
        if outcome == "already_sent":
            await self.finish("done")
            self.ended("done")
            self.clock.log("job done", f"message {message_id} was already sent")
            return
        if outcome == "failed":
            await self.finish("failed", last_error="the message's send had already failed")
            self.ended("failed")
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
                "first attempt was delivered after all, the contact receives this message twice",
                message_id,
            )
        self.claimed(claim["send_attempts"])
        await self.send(conversation, reply_to, key, claim["body"], message_id, claim["send_attempts"])

    async def send(
        self,
        conversation: dict[str, Any],
        reply_to: dict[str, Any] | None,
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
                context_message_id=reply_to["wa_message_id"] if reply_to else None,
                callback_data=key,
            )
        except SendFailed as failure:
            metrics.SENDS.labels(failure.kind, str(failure.code or "")).inc()
            self.clock.log("send end", f"{failure.kind}: {failure}", logging.WARNING)
            await self.handle_failure(conversation, message_id, failure)
            return
        metrics.SENDS.labels("sent", "").inc()
        self.clock.log("send end", f"wa_message_id={wa_message_id}")
        await self.record(message_id, wa_message_id)
        self.clock.log("message row confirmed", f"message_id={message_id} wa_message_id={wa_message_id}")
        self.ended("done")
        self.clock.log("job done", f"message_id={message_id}")

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
            await self.note(f"send outcome unknown: {failure}")
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
        self.ended("failed")
        self.clock.log("job failed", f"permanent error: {failure}", logging.ERROR)
