"""The operator-message task: sends a text an operator wrote in the inbox, through the same
claim/send/record path as AI replies (worker.sending). The web app queues the message row and
defers this task in one transaction; the sweep re-defers it if the job is lost."""

from __future__ import annotations

import procrastinate
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from waypost.db import fetchone
from waypost.sql import query
from worker.queue import REPLY_QUEUE, app
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision
from worker.sending import SendRun, run_send_task, unexpected_error

TASK_NAME = "send_operator_message"


def operator_key(client_key: str) -> str:
    """The idempotency key of an operator message, from the key the compose form generated."""
    return f"operator:{client_key}"[:512]


@app.task(name=TASK_NAME, queue=REPLY_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def send_operator_message(context: procrastinate.JobContext, message_id: int, request_id: str) -> None:
    connector = context.app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    await run_send_task(context, OperatorSendRun(resources_of(context), connector.pool, message_id), request_id)


class OperatorSendRun(SendRun):
    def __init__(self, resources: WorkerResources, pool: AsyncConnectionPool, message_id: int) -> None:
        super().__init__(resources, pool)
        self.message_id = message_id

    async def run(self) -> None:
        async with self.pool.connection() as conn:
            message = await fetchone(conn, "operator_message_load", message_id=self.message_id)
            if message is None or message["status"] not in ("sending", "unknown"):
                self.clock.log("picked job", f"operator message {self.message_id}: nothing to send")
                return
            self.attempts, self.first_seen = message["send_attempts"], message["created_at"]
            self.clock.log("picked job", f"operator message {self.message_id} send_attempts={message['send_attempts']}")
            conversation = await fetchone(conn, "reply_load_conversation", conversation_id=message["conversation_id"])
            assert conversation is not None
        await self.claim_and_send(
            conversation, key=message["idempotency_key"], body=message["body"], author="operator", reply_to=None
        )

    def claimed(self, send_attempts: int) -> None:
        self.attempts = send_attempts

    async def give_up(self, conn: AsyncConnection, conversation_id: int, reason: str) -> None:
        raise AssertionError("an operator message always has its row")  # retry_or_fail gets its message_id

    async def abandon(self, reason: str) -> None:
        async with self.pool.connection() as conn:
            errors = Jsonb([unexpected_error(reason)])
            await conn.execute(query("fail_send"), {"message_id": self.message_id, "errors": errors, "reason": reason})
