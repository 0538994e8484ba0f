"""The reply task: one run answers one turn (worker.turns: the inbound messages of a burst, or one),
through one outbound_jobs row.

The send goes through worker.sending, shared with operator messages. Each stage logs a fixed
phrase with request_id, job_id and the elapsed milliseconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import procrastinate
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from waypost import metrics
from waypost.db import autocommit, execute, fetch_all, fetch_optional, fetch_value
from waypost.logs import log_context
from waypost.text import clean_text
from worker import reply_start, sending, turns
from worker.budget import budgeted, over_budget
from worker.consent import NO_CONFIRMATION, confirmation_of
from worker.handover import NO_REPLY, hand_over, handover_reason, owed_message
from worker.media_ready import file_pending
from worker.orchestrator import Answer, Handover, OrchestratorError, ReplyRequest, Turn
from worker.queue import app
from worker.receipts import Answering, answering
from worker.reengage import outbound as reengaged
from worker.reengage import reengage
from worker.reply_history import turn_of, vision_image
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision
from worker.rows import Claim, Conversation, Inbound
from worker.sending import JobState, Outbound, SendRun, notify, retry_within_budget, run_send_task, unexpected_error
from worker.tasks import REPLY_QUEUE, SEND_REPLY

logger = logging.getLogger(__name__)

WINDOW = dt.timedelta(hours=24)
# Inbound types that are a tap on a choice the business offered (webhook.payload.message_body: the title)
TAP_TYPES = frozenset({"interactive", "button"})

# Why an AI reply was skipped, and what the operator is told about it (other reasons: nothing).
AI_PAUSED = "AI disabled for this conversation"
WINDOW_CLOSED = "outside the 24-hour customer service window"
NO_ANSWER = "the orchestrator had no reply"
# Deleted while its reply waited (a retry, a file): the operators see the deletion, nothing to answer.
REVOKED = "the contact deleted the message"
UNREADABLE = "a file the AI cannot read (WAYPOST_MEDIA_UNREADABLE_REPLY is empty)"
UNREADABLE_NOTICE = ("operator_needed", "The contact sent a {kind} the AI cannot read: it needs a person.")
SKIP_NOTIFICATIONS = {
    NO_ANSWER: ("ai_no_reply", "The AI had no answer for a message; it needs a person."),
    AI_PAUSED: ("operator_needed", "A new message arrived while the AI is paused: it waits for an operator."),
    WINDOW_CLOSED: (
        "window_closed",
        "A message could not be answered inside the 24-hour window; only a template message can reach the contact now.",
    ),
}


def skip_reason(conversation: Conversation, margin_seconds: float) -> str | None:
    if conversation.deleted_at is not None:
        return "conversation deleted"
    if not conversation.ai_enabled:
        return AI_PAUSED
    last_inbound = conversation.last_inbound_at
    closes = last_inbound + WINDOW - dt.timedelta(seconds=margin_seconds) if last_inbound else None
    if closes is None or dt.datetime.now(dt.UTC) >= closes:
        return WINDOW_CLOSED
    return None


@app.task(name=SEND_REPLY, queue=REPLY_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def send_reply(context: procrastinate.JobContext, outbound_job_id: int, request_id: str) -> None:
    run = ReplyRun(resources_of(context), outbound_job_id, reply_start.of(context, outbound_job_id))
    try:
        await run_send_task(context, run, request_id)
    finally:
        if run.receipt is not None:  # an immediate answer is marked read after its send
            with log_context(request_id=request_id, job_id=context.job.id):
                await run.receipt.settle()


class ReplyRun(SendRun):
    """An AI reply: its job is an outbound_jobs row, closed with the run's outcome."""

    def __init__(
        self, resources: WorkerResources, outbound_job_id: int, fetched: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(resources)
        self.outbound_job_id = outbound_job_id
        self.fetched = fetched  # the start the worker's fetch made (worker.reply_start), if it did
        self.inbound_at: dt.datetime | None = None  # when the turn's newest message was stored
        self.turn = turns.NO_TURN  # the inbound messages answered (prepare loads them)
        self.turn_size = 1  # how many of the AI's last history entries are this turn's
        self.start: reply_start.ReplyStart | None = None  # what prepare read in its one round trip
        self.receipt: Answering | None = None  # the read receipt and typing indicator, once the AI is asked

    async def prepare(self) -> Outbound | None:
        # One statement, committed at once (worker.reply_start): the turn's row is held only while it
        # runs, and each later update of the row is the first of its own transaction
        # (worker.tasks.requeue_reply says why that matters).
        self.start = started = await reply_start.start(self.pool, self.settings, self.outbound_job_id, self.fetched)
        if started is None:
            self.clock.log("picked job", f"outbound_job_id={self.outbound_job_id} not open (finished or gathering)")
            return None
        job = started.job
        self.attempts, self.first_seen = job.attempts, job.created_at
        self.clock.log("picked job", f"outbound_job_id={self.outbound_job_id} attempt={job.attempts}")
        if job.rearmed:
            async with self.pool.connection() as conn:
                if await turns.regather(conn, job.id, unless_due=True):
                    self.clock.log("turn gathering", "a message joined the turn: its quiet window is not over")
                    return None
        conversation = started.conversation
        self.clock.log("loaded conversation", f"conversation_id={conversation.id}")
        self.turn = started.turn
        inbound = self.turn.latest
        self.inbound_at = inbound.created_at
        count = len(self.turn.messages)
        self.clock.log("loaded inbound message", f"wa_message_id={inbound.wa_message_id} turn_messages={count}")
        outbound = await self.decide(conversation, inbound, self.turn.key, started.existing)
        # the turn is closed by the claim (ReplyRun.claim), in the same statement
        return None if outbound is None else self.turn.addressed(outbound)

    async def decide(
        self, conversation: Conversation, inbound: Inbound, key: str, existing: dict[str, Any] | None
    ) -> Outbound | None:
        """What this turn's reply is, or None (the job closed, or waiting for a file or more messages)."""
        if existing is not None:
            if existing["type"] == "template":  # a re-engagement was decided (worker.reengage)
                return reengaged(conversation, key, existing["body"])
            # A retry resends what was decided, never a new answer (the claim returns its kind and object).
            body = existing["body"] or ""
            return Outbound(conversation, key=key, body=body, author="ai", reply_to=await self.quoting(inbound))
        # an opt-out or opt-in word anywhere in the turn is confirmed
        start = self.start
        assert start is not None  # prepare read it
        confirmation = confirmation_of(self.settings, start.consent)
        reason = REVOKED if not self.turn.live else skip_reason(conversation, self.settings.window_margin_seconds)
        if confirmation is not None and reason == AI_PAUSED:
            reason = None  # an opt-out or opt-in is confirmed even while the AI is paused
        if reason == AI_PAUSED and (owed := await owed_message(self, self.turn.live)):
            return Outbound(conversation, key=key, body=owed, author="ai", reply_to=inbound)  # a run died mid-handover
        if reason == WINDOW_CLOSED and confirmation is None and self.resources.reengage is not None:
            # the AI's answer can no longer be sent: the configured template is, instead
            # the turn closed first: the template is claimed inside, and a message joining after it
            # is the next turn's (as for a handover)
            if not await self.close_turn():
                return None
            return await reengage(self, conversation, self.turn.first, key, WINDOW_CLOSED)
        if reason is None and confirmation is None and budgeted(self.settings):  # a confirmation is owed anyway
            async with self.pool.connection() as conn, conn.transaction():
                reason = await over_budget(conn, self.settings, conversation.phone_number_id)
        if reason or confirmation == "":
            await self.skip(conversation.id, reason or NO_CONFIRMATION)
            return None
        if confirmation is not None:
            return Outbound(conversation, key=key, body=confirmation, author="ai", reply_to=inbound)
        if handover := await handover_reason(self, conversation, self.turn.live, start.ai_replies):
            return await self.hand_over(conversation, inbound, key, handover)  # README "Handing over"
        if start.has_media and await self.wait_for_file():
            return None
        history = await self.history(conversation, inbound, start)
        if history is None or not any(turn.readable for turn in history[-self.turn_size :]):
            return await self.unreadable(conversation, inbound, key)  # files without words the AI could read
        self.receipt = answering(self.resources, conversation, inbound)
        async with self.receipt:  # read + typing… while the AI writes (settled in send_reply)
            found = await self.ask_orchestrator(conversation, inbound, history)
        if found is None or isinstance(found, Outbound):  # nothing to send, or the handover message
            return found
        return Outbound(
            conversation,
            key=key,
            body=found.text,
            author="ai",
            reply_to=await self.quoting(inbound),
            kind=found.kind,
            payload=found.payload,
        )

    def read_with_send(self) -> tuple[int, int] | None:
        return self.receipt.read_with_send() if self.receipt is not None else None

    def sent(self, sent_at: dt.datetime) -> None:
        if self.receipt is not None:
            self.receipt.sent(sent_at)

    async def claim(self, outbound: Outbound) -> Claim | None:
        """The claim with the turn closed in the same statement (`reply_close_and_claim`); None when a
        message joined since the run read the turn: it gathers again, and this run sends nothing."""
        async with autocommit(self.pool) as conn:
            claim = await fetch_optional(
                conn,
                "reply_close_and_claim",
                Claim,
                outbound_job_id=self.outbound_job_id,
                last_message_id=self.turn.last_id,
                **sending.claim_params(self, outbound),
            )
        if claim is None:
            await self.gather_again()
        return claim

    async def close_turn(self) -> bool:
        """The turn takes no more messages; False (gathering again) when one joined since it was read."""
        if await turns.close(self.pool, self.outbound_job_id, self.turn.last_id):
            return True
        await self.gather_again()
        return False

    async def gather_again(self) -> None:
        """A message joined the turn since this run read it (its close or its claim failed)."""
        await turns.joined(self.pool, self.outbound_job_id)
        self.clock.log("turn gathering", "a message joined the turn while its reply was decided: decided again")

    async def hand_over(self, conversation: Conversation, inbound: Inbound, key: str, reason: str) -> Outbound | None:
        """worker.handover, once the turn is closed: a message joining it now is the next turn's."""
        if not await self.close_turn():
            return None
        return await hand_over(self, conversation, inbound, key, reason)

    def claimed(self, send_attempts: int) -> None:
        """Nothing to count: a reply's budget is its job's attempts, counted at `outbound_job_start`."""

    def ended(self, state: JobState) -> None:
        metrics.REPLY_JOBS.labels(state).inc()
        metrics.REPLY_ATTEMPTS.observe(self.attempts)
        if state == "done" and self.inbound_at is not None:
            metrics.REPLY_SECONDS.observe((dt.datetime.now(dt.UTC) - self.inbound_at).total_seconds())

    async def skip(self, conversation_id: int, reason: str, notice: tuple[str, str] | None = None) -> None:
        """Close the job as skipped; the operators get `notice`, or the reason's own notification. Not
        when a message joined the turn meanwhile: the turn is decided again, with it."""
        if not await self.close_turn():
            return
        notice = notice or SKIP_NOTIFICATIONS.get(reason)
        async with self.pool.connection() as conn, conn.transaction():
            if notice is not None:
                await notify(conn, conversation_id, *notice)
            await self.close_job(conn, "skipped", skip_reason=reason)
        self.ended("skipped")
        self.clock.log("job done", f"skipped: {reason}")

    async def finish(self, state: JobState, *, last_error: str | None = None) -> None:
        async with autocommit(self.pool) as conn:
            await self.close_job(conn, state, last_error=last_error)

    async def close_job(
        self,
        conn: AsyncConnection[Any],
        state: JobState,
        *,
        last_error: str | None = None,
        skip_reason: str | None = None,
    ) -> None:
        """Close the outbound job on `conn`, inside the caller's transaction."""
        await execute(
            conn,
            "outbound_job_finish",
            outbound_job_id=self.outbound_job_id,
            status=state,
            last_error=last_error,
            skip_reason=skip_reason,
        )

    async def note(self, last_error: str) -> None:
        async with self.pool.connection() as conn:
            await execute(conn, "outbound_job_note", outbound_job_id=self.outbound_job_id, last_error=last_error)

    async def abandon(self, reason: str) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            # A claimed send fails with its message (waypost_fail_send_v1 closes the job too).
            errors = Jsonb([unexpected_error(reason)])
            await execute(
                conn, "reply_fail_claimed_send", outbound_job_id=self.outbound_job_id, reason=reason, errors=errors
            )
            await execute(conn, "outbound_job_give_up", outbound_job_id=self.outbound_job_id, reason=reason)

    async def unreadable(self, conversation: Conversation, inbound: Inbound, key: str) -> Outbound | None:
        """A voice note or an uncaptioned file: the configured answer, never one that pretends to
        have understood, and an operator is told."""
        kind, body = UNREADABLE_NOTICE
        notice = (kind, body.format(kind=inbound.type))
        answer = clean_text(self.settings.media_unreadable_reply).strip()[:4096]
        if not answer:
            await self.skip(conversation.id, UNREADABLE, notice)
            return None
        if not await self.close_turn():  # before telling anyone: a message joined, decided again
            return None
        async with self.pool.connection() as conn:
            await notify(conn, conversation.id, *notice)
        self.clock.log("unreadable media", f"type={inbound.type}: the configured answer, an operator told")
        return Outbound(conversation, key=key, body=answer, author="ai", reply_to=inbound)

    async def wait_for_file(self) -> bool:
        """True when a file of the turn is one the AI will read but is not ready: the job then waits,
        without a procrastinate job, for the download or transcription to wake it (worker.media_ready)."""
        async with self.pool.connection() as conn, conn.transaction():
            files = await fetch_all(conn, "reply_media_lock", outbound_job_id=self.outbound_job_id)
            media = next((row for row in files if file_pending(self.settings, row)), None)
            if media is None:
                return False
            await execute(conn, "outbound_job_wait", outbound_job_id=self.outbound_job_id)
        detail = f"media_id={media['id']} status={media['status']} transcript={media['transcript_status']}"
        self.clock.log("waiting for file", f"{detail}: the download or transcription wakes this reply")
        return True

    async def history(
        self, conversation: Conversation, inbound: Inbound, start: reply_start.ReplyStart
    ) -> tuple[Turn, ...] | None:
        """What the AI reads: the last messages, ending with the turn's (None when its newest is not
        there), as the run's start read them; read again for a turn with a file, which may have been
        stored or transcribed since. Sets `turn_size`: how many of the last entries are the turn's,
        from its first message. A message that joined since is not there: the claim, which closes the
        turn, sees it and the turn is decided again."""
        answered = {m.id for m in self.turn.live}
        rows = list(start.history)
        if start.has_media:
            async with autocommit(self.pool) as conn:
                rows = await fetch_all(
                    conn,
                    "reply_history",
                    conversation_id=conversation.id,
                    message_id=inbound.id,
                    limit=max(self.settings.history_messages, len(answered)),
                )
        if not rows or rows[0]["id"] != inbound.id:
            return None
        rows.reverse()
        history = []
        for row in rows:
            image = await vision_image(self.resources, self.clock, row) if row["id"] in answered else None
            history.append(dataclasses.replace(turn_of(row), image=image))
        self.turn_size = len(rows) - next(i for i, row in enumerate(rows) if row["id"] in answered)
        return tuple(history)

    async def quoting(self, inbound: Inbound) -> Inbound:
        """The message the reply quotes: the one it answers, or for a reaction the message reacted to
        (a reaction is not a message the contact can see quoted)."""
        if inbound.type != "reaction":
            return inbound
        async with self.pool.connection() as conn:
            target = await fetch_value(conn, "reply_reaction_target", message_id=inbound.id)
        return dataclasses.replace(inbound, wa_message_id=target) if target else inbound

    async def ask_orchestrator(
        self, conversation: Conversation, inbound: Inbound, history: tuple[Turn, ...]
    ) -> Answer | Outbound | None:
        tap_id = None
        if inbound.type in TAP_TYPES:
            async with self.pool.connection() as conn:
                tap_id = await fetch_value(conn, "reply_tap_id", message_id=inbound.id)
        orchestrator = self.resources.orchestrator
        self.clock.log("orchestrator start", f"provider={orchestrator.name} history={len(history)}")
        tap_id = clean_text(tap_id)[:256] if isinstance(tap_id, str) and tap_id.strip() else None
        request = ReplyRequest(
            conversation.id,
            conversation.contact_name,
            history,
            tap_id=tap_id,
            turn_size=self.turn_size,
            knowledge_base=self.start.knowledge_base if self.start is not None else True,
        )
        timer = metrics.Timer()
        try:
            answer = await orchestrator.reply(request)
        except OrchestratorError as exc:
            metrics.ORCHESTRATOR_FAILURES.labels(orchestrator.name).inc()
            self.clock.log("orchestrator end", f"failed: {exc}", logging.WARNING)
            failed = await retry_within_budget(self, f"orchestrator failed: {exc}")
            if self.settings.handover_on_ai_failure:  # before any claim: the handover message is this reply
                return await self.hand_over(conversation, inbound, self.turn.key, f"the AI failed: {failed}")
            await self.give_up(conversation.id, failed)
            return None
        metrics.ORCHESTRATOR_SECONDS.labels(orchestrator.name).observe(timer.seconds)
        if isinstance(answer, Handover):  # no grounded answer: a person takes it (README "Handing over")
            self.clock.log("orchestrator end", f"handover: {answer.reason}")
            return await self.hand_over(conversation, inbound, self.turn.key, answer.reason)
        # The model's text is outside input: a NUL or a lone surrogate would fail every write of it.
        text = clean_text(answer.text)[:4096] if answer else ""
        logged = f" text={text!r}" if text and self.settings.log_bodies else ""
        self.clock.log("orchestrator end", f"kind={answer.kind if answer else '-'} chars={len(text)}{logged}")
        if answer is None or not (text or answer.payload):
            if self.settings.handover_on_ai_failure:
                return await self.hand_over(conversation, inbound, self.turn.key, NO_REPLY)
            await self.skip(conversation.id, NO_ANSWER)
            return None
        return dataclasses.replace(answer, text=text)

    async def give_up(self, conversation_id: int, reason: str) -> None:
        """Out of retries before any message was claimed: fail the job, tell the operators (unless a
        message joined the turn meanwhile: it is decided again, with it)."""
        if not await self.close_turn():
            return
        async with self.pool.connection() as conn, conn.transaction():
            await notify(conn, conversation_id, "ai_failed", f"No reply was sent: {reason}")
            await self.close_job(conn, "failed", last_error=reason)
        self.ended("failed")
        self.clock.log("job failed", reason, logging.ERROR)
