"""Status webhooks: forward only, failed is terminal, early statuses are kept, unknown sends complete."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psycopg
from psycopg.types.json import Jsonb

from tests.conftest import post_webhook
from waypost.devtools import payloads
from waypost.sql import query


def outbound(db: psycopg.Connection, *, wamid: str | None, key: str, status: str = "sent") -> int:
    conversation = db.execute(
        "INSERT INTO conversations (phone_number_id, wa_id) VALUES ('106540352242922', %s) "
        "ON CONFLICT DO NOTHING RETURNING id",
        [f"contact-{key}"],
    ).fetchone()
    return db.execute(
        "INSERT INTO messages (conversation_id, direction, author, wa_message_id, idempotency_key,"
        " type, body, status) VALUES (%s, 'outbound', 'ai', %s, %s, 'text', 'hello', %s) RETURNING id",
        [conversation["id"], wamid, key, status],
    ).fetchone()["id"]


def send_statuses(client: httpx.Client, *items: dict) -> dict:
    response = post_webhook(client, payloads.dumps(payloads.statuses(*items)))
    assert response.status_code == 200, response.text
    return response.json()["statuses"]


def message(db: psycopg.Connection, message_id: int) -> dict:
    return db.execute("SELECT * FROM messages WHERE id = %s", [message_id]).fetchone()


def test_statuses_move_forward_only(client: httpx.Client, db: psycopg.Connection) -> None:
    mid = outbound(db, wamid="wamid.out1", key="k1")
    assert send_statuses(client, payloads.status("wamid.out1", "read", timestamp=1750000300)) == {"applied": 1}
    # delivered arrives late: status stays read, but its own timestamp is kept
    assert send_statuses(client, payloads.status("wamid.out1", "delivered", timestamp=1750000200)) == {"stale": 1}
    row = message(db, mid)
    assert row["status"] == "read"
    assert int(row["read_at"].timestamp()) == 1750000300
    assert int(row["delivered_at"].timestamp()) == 1750000200
    assert send_statuses(client, payloads.status("wamid.out1", "sent")) == {"stale": 1}
    assert message(db, mid)["status"] == "read"
    assert send_statuses(client, payloads.status("wamid.out1", "read")) == {"duplicate": 1}


def test_missing_delivered_is_normal(client: httpx.Client, db: psycopg.Connection) -> None:
    mid = outbound(db, wamid="wamid.out2", key="k2", status="sending")
    send_statuses(client, payloads.status("wamid.out2", "sent"), payloads.status("wamid.out2", "read"))
    row = message(db, mid)
    assert row["status"] == "read" and row["sent_at"] and row["read_at"] and row["delivered_at"] is None


def test_failed_is_terminal_and_notifies(client: httpx.Client, db: psycopg.Connection) -> None:
    mid = outbound(db, wamid="wamid.out3", key="k3")
    error = {
        "code": 131049,
        "title": "This message was not delivered to maintain healthy ecosystem engagement.",
        "error_data": {"details": "In order to maintain a healthy ecosystem"},
    }
    assert send_statuses(client, payloads.status("wamid.out3", "failed", errors=[error])) == {"applied": 1}
    assert send_statuses(client, payloads.status("wamid.out3", "delivered")) == {"stale": 1}
    row = message(db, mid)
    assert row["status"] == "failed" and row["error"] == [error] and row["failed_at"]
    note = db.execute("SELECT * FROM notifications").fetchone()
    assert note["kind"] == "send_failed" and note["message_id"] == mid
    assert "131049" in note["body"] and "healthy ecosystem" in note["body"]


def test_failed_after_read_does_not_apply(client: httpx.Client, db: psycopg.Connection) -> None:
    mid = outbound(db, wamid="wamid.out4", key="k4", status="read")
    assert send_statuses(client, payloads.status("wamid.out4", "failed", errors=[{"code": 1}])) == {"stale": 1}
    assert message(db, mid)["status"] == "read"
    assert db.execute("SELECT count(*) AS n FROM notifications").fetchone()["n"] == 0


def test_status_before_its_message_is_kept(client: httpx.Client, db: psycopg.Connection) -> None:
    assert send_statuses(client, payloads.status("wamid.early", "delivered")) == {"pending": 1}
    row = db.execute("SELECT * FROM message_statuses").fetchone()
    assert (row["wa_message_id"], row["status"], row["message_id"]) == ("wamid.early", "delivered", None)


def test_callback_data_completes_an_unknown_send(client: httpx.Client, db: psycopg.Connection) -> None:
    mid = outbound(db, wamid=None, key="reply:wamid.in9", status="unknown")
    assert send_statuses(client, payloads.status("wamid.out9", "sent", callback="reply:wamid.in9")) == {"applied": 1}
    row = message(db, mid)
    assert (row["wa_message_id"], row["status"]) == ("wamid.out9", "sent")


def test_batched_statuses_are_all_applied(client: httpx.Client, db: psycopg.Connection) -> None:
    ids = [outbound(db, wamid=f"wamid.b{i}", key=f"b{i}") for i in range(3)]
    first = payloads.change(
        statuses=[payloads.status("wamid.b0", "delivered"), payloads.status("wamid.b1", "delivered")]
    )
    second = payloads.change(statuses=[payloads.status("wamid.b2", "read")])
    response = post_webhook(client, payloads.dumps(payloads.envelope([first], [second])))
    assert response.json()["statuses"] == {"applied": 3}
    assert [message(db, i)["status"] for i in ids] == ["delivered", "delivered", "read"]


def test_racing_statuses_of_one_message_never_deadlock(database_url: str, db: psycopg.Connection) -> None:
    """Meta posts sent, delivered and read of one message close together, each its own webhook. Each
    status row's foreign key shares the message's key while the status waits for the message's row: the
    statuses are applied one after the other, never deadlocked (v3 was, a few times in 800; the common
    webhook runs a deadlocked statement again, so this calls the function directly)."""
    count = 200
    ids = [outbound(db, wamid=f"wamid.race{i}", key=f"race{i}", status="sending") for i in range(count)]

    def apply_each(status: str) -> list[str]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return [
                conn.execute(
                    query("apply_message_status"),
                    {
                        "wa_message_id": f"wamid.race{i}",
                        "status": status,
                        "status_at": datetime.now(UTC),
                        "recipient_id": "16505551234",
                        "callback_data": None,
                        "errors": None,
                        "payload": Jsonb({}),
                    },
                ).fetchone()[0]
                for i in range(count)
            ]

    with ThreadPoolExecutor(4) as pool:
        outcomes = Counter(o for done in pool.map(apply_each, ["sent", "delivered", "read", "played"]) for o in done)
    # every status applied, or stale behind a later one; none pending, none lost to an error
    assert set(outcomes) <= {"applied", "stale"} and outcomes.total() == 4 * count, outcomes
    assert outcomes["applied"] >= count  # each message's played, at least
    rows = db.execute("SELECT status, read_at, sent_at FROM messages WHERE id = ANY(%s)", [ids]).fetchall()
    assert all(row["status"] == "played" and row["read_at"] and row["sent_at"] for row in rows)
