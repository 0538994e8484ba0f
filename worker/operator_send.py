"""The operator-message task: sends what an operator wrote in the inbox (a text, a file, a reaction,
a reply to a chosen message), through the same claim/send/record path as AI replies
(worker.sending). The web app queues the message row and defers this task in one transaction; the
sweep re-defers it if the job is lost."""

from __future__ import annotations

import procrastinate
from psycopg.types.json import Jsonb

from waypost.db import execute, fetch_one, fetch_optional
from worker.queue import app
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision
from worker.rows import Conversation, Inbound
from worker.sending import JobState, Outbound, SendRun, run_send_task, unexpected_error
from worker.tasks import REPLY_QUEUE, SEND_OPERATOR_MESSAGE


@app.task(name=SEND_OPERATOR_MESSAGE, queue=REPLY_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def send_operator_message(context: procrastinate.JobContext, message_id: int, request_id: str) -> None:
    await run_send_task(context, OperatorSendRun(resources_of(context), message_id), request_id)


class OperatorSendRun(SendRun):
    """An operator message: its job is the message row itself, which the send path keeps up to date
    (waypost_claim_send_v2, record/fail_send); the job has no row of its own to close or annotate."""

    def __init__(self, resources: WorkerResources, message_id: int) -> None:
        super().__init__(resources)
        self.message_id = message_id

    async def prepare(self) -> Outbound | None:
        async with self.pool.connection() as conn:
            message = await fetch_optional(conn, "operator_message_load", message_id=self.message_id)
            if message is None or message["status"] not in ("sending", "unknown"):
                self.clock.log("picked job", f"operator message {self.message_id}: nothing to send")
                return None
            self.attempts, self.first_seen = message["send_attempts"], message["created_at"]
            self.clock.log("picked job", f"operator message {self.message_id} send_attempts={message['send_attempts']}")
            conversation = await fetch_one(
                conn, "reply_load_conversation", Conversation, conversation_id=message["conversation_id"]
            )
            reply_to = None
            if message["reply_to_message_id"] is not None:  # sent as context.message_id: quoted
                reply_to = await fetch_one(
                    conn, "reply_load_message", Inbound, message_id=message["reply_to_message_id"]
                )
        # The row holds the kind and Graph object decided when it was queued (a file: its media row).
        return Outbound(
            conversation,
            key=message["idempotency_key"],
            body=message["body"],
            author="operator",
            reply_to=reply_to,
            kind=message["type"],
            payload=message["payload"],
        )

    def claimed(self, send_attempts: int) -> None:
        self.attempts = send_attempts  # the budget is the message's send attempts

    async def finish(self, state: JobState, *, last_error: str | None = None) -> None:
        """Nothing to close: the message's status is the outcome."""

    async def note(self, last_error: str) -> None:
        """Nothing to write: the message row holds its errors and status."""

    def ended(self, state: JobState) -> None:
        """No metrics: the reply metrics count AI replies only."""

    async def abandon(self, reason: str) -> None:
        async with self.pool.connection() as conn:
            errors = Jsonb([unexpected_error(reason)])
            await execute(conn, "fail_send", message_id=self.message_id, errors=errors, reason=reason)
