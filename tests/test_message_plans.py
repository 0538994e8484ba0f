"""Statements on messages whose plans a young table's statistics cannot spoil (issue 17, migration
0044): on the statistics taken before any message was outbound, the reply's record finds
its message by id, not by reading every outbound message."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.plans import rows_handled
from waypost.devtools import payloads


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


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
