"""A reply's statements, with plans that statistics taken at the wrong moment cannot spoil (issue 17):
on statistics taken before any message was outbound, the reply's record finds its message by id, not
by reading every outbound message (migration 0044); on statistics taken with no job open, it closes
its job through the job's inbound message, not by reading every open job (migration 0045)."""

from __future__ import annotations

import psycopg
import pytest

from tests.plans import rows_handled
from waypost.devtools import payloads


def add_messages(db: psycopg.Connection, conversations: int, each: int, direction: str, status: str) -> list[int]:
    """`each` messages (the AI's replies, or the contact's) in each of `conversations` new conversations;
    their ids."""
    return [
        row[0]
        for row in db.execute(
            "WITH c AS (INSERT INTO conversations (phone_number_id, wa_id)"
            "           SELECT %s, '1555' || lpad((n + (SELECT count(*) FROM conversations))::text, 7, '0')"
            "             FROM generate_series(1, %s) n RETURNING id)"
            " INSERT INTO messages (conversation_id, direction, author, idempotency_key, wa_message_id, type, body,"
            "                      status)"
            " SELECT c.id, %s, CASE %s WHEN 'outbound' THEN 'ai' ELSE 'contact' END,"
            "        CASE %s WHEN 'outbound' THEN gen_random_uuid()::text END,"
            "        CASE %s WHEN 'inbound' THEN 'wamid.' || gen_random_uuid() END, 'text', 'Our hours are 9 to 5.', %s"
            "   FROM c, generate_series(1, %s)"
            " RETURNING id",
            [payloads.PHONE_NUMBER_ID, conversations, *[direction] * 4, status, each],
        ).fetchall()
    ]


def test_a_reply_is_recorded_by_its_id_on_the_statistics_of_a_young_table(conn: psycopg.Connection) -> None:
    add_messages(conn, 50, 2, "inbound", "received")
    conn.execute("ANALYZE messages")  # no outbound message yet, as the statistics will keep saying
    add_messages(conn, 400, 2, "outbound", "sent")
    (sending,) = add_messages(conn, 1, 1, "outbound", "sending")
    params = {"message_id": sending, "wa_message_id": "wamid.recorded", "sent_at": "2026-11-27T12:00:00Z"}
    handled = rows_handled(
        conn, "SELECT waypost_record_send_v1(%(message_id)s, %(wa_message_id)s, %(sent_at)s)", params
    )
    # 0019's partial index on outbound messages, chosen on these statistics, read all 801 of them
    print(f"\nrows handled by the reply's record: {handled}")
    assert handled < 50


def open_jobs(db: psycopg.Connection, inbound: list[int], status: str) -> None:
    db.execute(
        "INSERT INTO outbound_jobs (inbound_message_id, conversation_id, status, request_id)"
        " SELECT m.id, m.conversation_id, %s, 'req-' || m.id FROM messages m WHERE m.id = ANY(%s)",
        [status, inbound],
    )


@pytest.mark.parametrize("version, most", [("v2", 50), ("v1", None)])
def test_a_reply_closes_its_job_through_its_inbound_message_on_the_statistics_of_a_drained_queue(
    conn: psycopg.Connection, version: str, most: int | None
) -> None:
    """waypost_finish_reply_job_v2 reads the job by its unique inbound message, where v1, on statistics
    that took the open jobs for none, read every open job (the partial index outbound_jobs_open_idx)."""
    open_jobs(conn, add_messages(conn, 50, 1, "inbound", "received"), "done")
    conn.execute("ANALYZE outbound_jobs")  # no job open, as the statistics will keep saying
    inbound = add_messages(conn, 400, 1, "inbound", "received")
    open_jobs(conn, inbound, "running")
    reply = conn.execute(
        "INSERT INTO messages (conversation_id, direction, author, idempotency_key, type, body, status,"
        "                      reply_to_message_id)"
        " SELECT conversation_id, 'outbound', 'ai', 'reply-1', 'text', 'Our hours are 9 to 5.', 'sent', id"
        "   FROM messages WHERE id = %s RETURNING id",
        [inbound[200]],
    ).fetchone()[0]
    handled = rows_handled(conn, f"SELECT waypost_finish_reply_job_{version}(%(message_id)s)", {"message_id": reply})
    print(f"\nrows handled by waypost_finish_reply_job_{version}: {handled}")
    if most is None:  # the old version, shown to read them all: the case is the one v2 is for
        assert handled > 400
    else:
        assert handled < most
    conn.execute(f"SELECT waypost_finish_reply_job_{version}(%s)", [reply])  # rows_handled rolled back
    closed = conn.execute("SELECT status, count(*) FROM outbound_jobs WHERE status <> 'done' GROUP BY 1").fetchall()
    assert closed == [("running", 399)]  # this one job, and no other
