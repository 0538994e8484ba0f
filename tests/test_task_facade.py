"""worker.tasks defers by task name: the queue rows are the ones the task objects themselves write."""

from __future__ import annotations

import re

import psycopg

from waypost.db import create_pool
from waypost.settings import Settings
from waypost.sql import MIGRATIONS_DIR, query
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


def test_the_sql_names_the_task_and_parses_the_lock_as_the_facade_does() -> None:
    """The task name and the lock format cross into SQL: the sweep's query names the operator task,
    and the operator views read the conversation back out of the lock."""
    assert f"'{tasks.SEND_OPERATOR_MESSAGE}'" in query("sweep_orphan_operator_messages")
    view = (MIGRATIONS_DIR / "0008_operator_views.sql").read_text()
    found = re.search(r"substring\(q\.lock FROM '([^']+)'\)", view)
    assert found is not None
    parsed = re.fullmatch(found.group(1).strip("^$"), tasks.conversation_lock(42))
    assert parsed is not None and parsed.group(1) == "42"
