"""Claim, send, record: the one path every outbound message takes, AI reply or operator message.

The send itself is guarded by SQL (waypost_claim_send_v2): whatever runs a send, however often, at
most one claim for a message's idempotency key is live at a time, and a recorded send ends it.

Control goes one way: a task builds its SendRun and hands it to `run_send_task`, which asks the run
what to send (`prepare`) and then sends it once (`send_once`), calling the run's abstract hooks
(`finish`, `note`, `claimed`, `ended`, `abandon`) to say what happened. A new kind of send (media,
templates) subclasses SendRun and implements every hook; none has a silent default.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from typing import Any, Literal

import procrastinate
import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from waypost import metrics
from waypost.db import Pool, autocommit, execute, fetch_one
from waypost.logs import log_context
from waypost.text import clean_text
from worker import job_end, outbound_media, template_errors
from worker.graph import SendFailed
from worker.resources import WorkerResources
from worker.retry import RetryLater, may_retry, retry_delay
from worker.rows import Claim, Conversation, Inbound

logger = logging.getLogger(__name__)

JobState = Literal["done", "failed", "skipped"]


class Stopwatch:
    def __init__(self, stage_logger: logging.Logger) -> None:
        self.started = time.perf_counter()
        self.logger = stage_logger

    def log(self, stage: str, detail: str = "", level: int = logging.INFO) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        self.logger.log(level, "%s elapsed_ms=%.1f %s", stage, elapsed, detail)


@dataclasses.dataclass(frozen=True)
class Outbound:
    """What a run asks `send_once` to send."""

    conversation: Conversation
    key: str  # the idempotency key, also sent to Meta as biz_opaque_callback_data
    body: str | None  # the text, or what the inbox and the AI's history show for another kind
    author: Literal["ai", "operator"]
    reply_to: Inbound | None = None
    kind: str = "text"  # the WhatsApp message type
    payload: dict[str, Any] | None = None  # its Graph object, for any kind but text
    quote: bool = True  # sent quoting reply_to (context.message_id); its link is kept either way


class SendRun(abc.ABC):
    """One run of a send job: its state, and what its job makes of each outcome."""

    def __init__(self, resources: WorkerResources) -> None:
        self.settings = resources.settings
        self.resources = resources
        self.pool: Pool = resources.pool
        # stage lines name the task's module: worker.reply, worker.operator_send
        self.clock = Stopwatch(logging.getLogger(type(self).__module__))
        # the retry budget: attempts so far, and when the work was first asked for
        self.attempts = 0
        self.first_seen = dt.datetime.now(dt.UTC)
        # the procrastinate job, for the send's record to end (run_send_task sets it)
        self.job_end: job_end.JobEnd | None = None

    @abc.abstractmethod
    async def prepare(self) -> Outbound | None:
        """Load the job and decide what to send; None when nothing is to be sent (the run has
        already closed its job and logged why)."""

    async def claim(self, outbound: Outbound) -> Claim | None:
        """The claim of `outbound`'s key (`claim_send`, one statement, committed as it ends). A run
        whose claim comes with a write of its own overrides this (worker.reply closes its turn in the
        same statement); None then means it claimed nothing and has said why."""
        async with autocommit(self.pool) as conn:
            return await fetch_one(conn, "claim_send", Claim, **claim_params(self, outbound))

    @abc.abstractmethod
    async def finish(self, state: JobState, *, last_error: str | None = None) -> None:
        """The claim found the message's fate already settled (sent, or failed): close the job."""

    @abc.abstractmethod
    async def note(self, last_error: str) -> None:
        """The job is not over (a retry or a status is awaited); write down why."""

    @abc.abstractmethod
    def claimed(self, send_attempts: int) -> None:
        """This run may call the Graph API; `send_attempts` counts that call."""

    @abc.abstractmethod
    def ended(self, state: JobState) -> None:
        """The job reached a final state (metrics)."""

    def read_with_send(self) -> tuple[int, int] | None:
        """(conversation id, message id) of the inbound message to mark read with the send's record,
        for a read call right after it; None: no such call (the default)."""
        return None

    def sent(self, sent_at: dt.datetime) -> None:
        """The send is recorded (as of `sent_at`, the read mark's time with read_with_send)."""
        return None  # nothing to do unless the run marks a message read with the send

    @abc.abstractmethod
    async def abandon(self, reason: str) -> None:
        """An error nobody classified, out of retries: fail the job and its message, tell the operators."""


async def run_send_task(context: procrastinate.JobContext, run: SendRun, request_id: str) -> None:
    """Run a send job with its log context. A lost database is a bounded retry; so is any error
    nobody classified, after which the job fails and the operators are told: never left running."""
    run.job_end = job_end.of(context)
    with log_context(request_id=request_id, job_id=context.job.id):
        try:
            outbound = await run.prepare()
            if outbound is not None:
                await send_once(run, outbound)
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


async def notify(conn: AsyncConnection[Any], conversation_id: int, kind: str, body: str) -> None:
    await execute(conn, "notification_insert", conversation_id=conversation_id, message_id=None, kind=kind, body=body)


async def retry_within_budget(
    run: SendRun, reason: str, *, retry_after: float | None = None, code: int | None = None
) -> str:
    """Note why and raise RetryLater while the run's retry budget lasts; else the reason to fail with
    (the caller fails what it holds: the claimed message, or the job that has none yet)."""
    delay = retry_delay(run.settings, run.attempts, retry_after, code)
    if may_retry(run.settings, run.attempts, run.first_seen, delay):
        await run.note(reason)
        raise RetryLater(reason, delay)
    return f"gave up after {run.attempts} attempt(s): {reason}"


def claim_params(run: SendRun, outbound: Outbound) -> dict[str, Any]:
    """The parameters of `claim_send` (waypost_claim_send_v2) for `outbound`."""
    return {
        "conversation_id": outbound.conversation.id,
        "idempotency_key": outbound.key,
        "author": outbound.author,
        "type": outbound.kind,
        "body": outbound.body,
        "payload": Jsonb(outbound.payload) if outbound.payload is not None else None,
        "reply_to_message_id": outbound.reply_to.id if outbound.reply_to else None,
        "stale_after": run.settings.sending_stale_after,
        "grace": run.settings.unknown_grace_seconds,
    }


async def send_once(run: SendRun, outbound: Outbound) -> None:
    """Claim the send of `outbound`'s key, and call the Graph API when the claim allows it."""
    claim = await run.claim(outbound)
    if claim is None:
        return
    message_id = claim.message_id
    if claim.outcome == "already_sent":
        await run.finish("done")
        run.ended("done")
        run.clock.log("job done", f"message {message_id} was already sent")
        return
    if claim.outcome == "failed":
        await run.finish("failed", last_error="the message's send had already failed")
        run.ended("failed")
        run.clock.log("job failed", f"message {message_id} had already failed")
        return
    if claim.outcome == "in_progress":
        run.clock.log("send skipped", f"message {message_id}: another attempt is in flight")
        return
    if claim.outcome == "awaiting_status":
        await run.note("send outcome unknown: waiting for a status webhook or the grace period")
        run.clock.log("send skipped", f"message {message_id}: outcome unknown, awaiting a status webhook")
        return
    if claim.outcome == "resend":
        logger.warning(
            "resending message %s: no status arrived within the grace period. At-least-once: if the "
            "first attempt was delivered after all, the contact receives this message twice",
            message_id,
        )
    run.claimed(claim.send_attempts)
    await _send(run, outbound, claim)


def graph_content(claim: Claim) -> dict[str, Any]:
    """The Graph object for the claimed message: the text, or the payload stored with the claim
    (a retry sends what the first attempt decided, never a new answer)."""
    if claim.type == "text" or claim.payload is None:
        return {"preview_url": False, "body": claim.body or ""}
    return claim.payload


async def resolve_content(run: SendRun, outbound: Outbound, claim: Claim) -> dict[str, Any]:
    """graph_content, with a media message's file uploaded to Meta first (once: worker.outbound_media
    keeps Meta's id). Raises SendFailed (never "ambiguous": nothing is sent yet)."""
    content = graph_content(claim)
    if not outbound_media.needs_upload(claim.type, content):
        return content
    return await outbound_media.media_content(
        run.resources,
        message_id=claim.message_id,
        author=outbound.author,
        phone_number_id=outbound.conversation.phone_number_id,
        kind=claim.type,
        content=content,
    )


async def _content_or_release(run: SendRun, outbound: Outbound, claim: Claim) -> dict[str, Any]:
    """resolve_content; on an error nobody classified (the database, a file, the disk), the claim is
    released before the error goes on: nothing was sent, so the next attempt may send at once, where a
    held claim would wait for the sweep and then resend as a possible duplicate."""
    try:
        return await resolve_content(run, outbound, claim)
    except SendFailed:
        raise
    except Exception as exc:
        errors = Jsonb([unexpected_error(clean_text(f"{type(exc).__name__}: {exc}")[:1000])])
        with contextlib.suppress(psycopg.Error):
            async with run.pool.connection() as conn:
                await execute(conn, "release_send", message_id=claim.message_id, errors=errors)
        raise


async def _send(run: SendRun, outbound: Outbound, claim: Claim) -> None:
    message_id = claim.message_id
    run.clock.log("send start", f"message_id={message_id} send_attempt={claim.send_attempts}")
    conversation = outbound.conversation
    try:
        content = await _content_or_release(run, outbound, claim)
        wa_message_id = await run.resources.graph.send_message(
            phone_number_id=conversation.phone_number_id,
            wa_id=conversation.wa_id,
            user_id=conversation.user_id,
            kind=claim.type,
            content=content,
            context_message_id=outbound.reply_to.wa_message_id if outbound.reply_to and outbound.quote else None,
            callback_data=outbound.key,
        )
    except SendFailed as failure:
        metrics.SENDS.labels(failure.kind, str(failure.code or "")).inc()
        run.clock.log("send end", f"{failure.kind}: {failure}", logging.WARNING)
        await _handle_failure(run, claim, failure)
        return
    metrics.SENDS.labels("sent", "").inc()
    run.clock.log("send end", f"wa_message_id={wa_message_id}")
    run.sent(await _record(run.pool, message_id, wa_message_id, run.read_with_send(), run.job_end))
    run.clock.log("message row confirmed", f"message_id={message_id} wa_message_id={wa_message_id}")
    run.ended("done")
    run.clock.log("job done", f"message_id={message_id}")


# Writing down an accepted send: this many attempts in all, a second apart, while the database is away.
RECORD_ATTEMPTS = 5


async def _record(
    pool: Pool, message_id: int, wa_message_id: str, read: tuple[int, int] | None, end: job_end.JobEnd | None
) -> dt.datetime:
    # Meta accepted the message: insist on writing that down. If the database stays away, the
    # 'sent' status webhook (carrying our key) records it instead. The first attempt is made without
    # tenacity, whose machinery cost about 0.3 ms of CPU on every reply (issue 17); it takes over,
    # with the same schedule, only once the database failed.
    try:
        return await _record_once(pool, message_id, wa_message_id, read, end)
    except psycopg.OperationalError:
        logger.warning("recording the send of message %s failed; retrying", message_id, exc_info=True)
    await asyncio.sleep(1)
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(psycopg.OperationalError),
        stop=stop_after_attempt(RECORD_ATTEMPTS - 1),
        wait=wait_fixed(1),
        reraise=True,
    ):
        with attempt:
            return await _record_once(pool, message_id, wa_message_id, read, end)
    raise AssertionError("unreachable: the last attempt's error is raised")


async def _record_once(
    pool: Pool, message_id: int, wa_message_id: str, read: tuple[int, int] | None, end: job_end.JobEnd | None
) -> dt.datetime:
    """The send's record; with `read`, that message (and the earlier ones) marked read in the same
    statement; with `end`, its procrastinate job ended too (worker.job_end). When it was recorded."""
    conversation_id, read_message_id = read if read is not None else (None, None)
    async with autocommit(pool) as conn:
        sent_at = dt.datetime.now(dt.UTC)
        row = await fetch_one(
            conn,
            "record_send",
            message_id=message_id,
            wa_message_id=wa_message_id,
            sent_at=sent_at,
            read_conversation_id=conversation_id,
            read_message_id=read_message_id,
            **(end.params() if end is not None else job_end.NO_JOB),
        )
        if end is not None and row["job_ended"]:
            end.ended = True  # committed: whatever befalls the connection now
    return sent_at


async def _handle_failure(run: SendRun, claim: Claim, failure: SendFailed) -> None:
    message_id = claim.message_id
    if failure.kind == "ambiguous":
        async with run.pool.connection() as conn, conn.transaction():
            await execute(conn, "mark_send_unknown", message_id=message_id)
        await run.note(f"send outcome unknown: {failure}")
        run.clock.log(
            "send unknown",
            f"message {message_id}: not resent now; a status webhook or the sweep after the grace period resolves it",
            logging.WARNING,
        )
        return
    if failure.kind == "retryable":
        async with run.pool.connection() as conn:
            await execute(conn, "release_send", message_id=message_id, errors=Jsonb(failure.as_errors()))
        final = await retry_within_budget(run, str(failure), retry_after=failure.retry_after, code=failure.code)
        async with run.pool.connection() as conn, conn.transaction():
            await execute(conn, "fail_send", message_id=message_id, errors=Jsonb(failure.as_errors()), reason=final)
        run.ended("failed")
        run.clock.log("job failed", final, logging.ERROR)
        return
    async with run.pool.connection() as conn, conn.transaction():
        # A paused template's row first: an operator's template send locks the template, then the
        # conversation; failing the message locks the conversation (its notification), so this order
        # is the same and the two never deadlock.
        await template_errors.note_refusal(conn, claim, failure)
        await execute(
            conn,
            "fail_send",
            message_id=message_id,
            errors=Jsonb(failure.as_errors()),
            reason=f"permanent error: {failure}",
        )
    run.ended("failed")
    run.clock.log("job failed", f"permanent error: {failure}", logging.ERROR)
