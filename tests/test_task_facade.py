"""worker.tasks defers by task name: the queue rows are the ones the task objects themselves write."""

from __future__ import annotations

import psycopg

from waypost.db import create_pool
from waypost.settings import Settings
from worker import tasks

COLUMNS = "task_name, queue_name, lock, queueing_lock, args, priority, status, scheduled_at"


async def test_a_job_deferred_by_name_is_the_job_its_task_defers(settings: Settings, db: psycopg.Connection) -> None:
    from worker.operator_send import send_operator_message
    from worker.reply import send_reply

    async with create_pool(settings) as pool, pool.connection() as conn:
        await tasks.defer_reply(conn, outbound_job_id=7, conversation_id=3, request_id="r-1")
        await send_reply.configure(connection=conn, lock=tasks.conversation_lock(3)).defer_async(
            outbound_job_id=7, request_id="r-1"
        )
        await tasks.defer_operator_send(conn, message_id=9, conversation_id=4, request_id="r-2")
        await send_operator_message.configure(connection=conn, lock=tasks.conversation_lock(4)).defer_async(
            message_id=9, request_id="r-2"
        )
    rows = db.execute(f"SELECT {COLUMNS} FROM procrastinate_jobs ORDER BY id").fetchall()
    assert len(rows) == 4
    assert rows[0] == rows[1] and rows[2] == rows[3]
    assert rows[0]["lock"] == "conversation:3" and rows[0]["queue_name"] == "replies"
    assert rows[2]["task_name"] == "send_operator_message"
