"""The operators' views return what their names say, on seeded data."""

from __future__ import annotations

import psycopg


def seed(db: psycopg.Connection) -> dict[str, int]:
    conversation = db.execute(
        "INSERT INTO conversations (phone_number_id, wa_id) VALUES ('p', '1') RETURNING id"
    ).fetchone()["id"]
    ids = {}
    for n, (status, age) in enumerate(
        [
            ("pending", "5 minutes"),
            ("running", "10 minutes"),
            ("running", "10 seconds"),
            ("done", "1 hour"),
            ("failed", "1 hour"),
        ]
    ):
        inbound = db.execute(
            "INSERT INTO messages (conversation_id, direction, author, wa_message_id, type, body, status) "
            "VALUES (%s, 'inbound', 'contact', %s, 'text', 'hi', 'received') RETURNING id",
            [conversation, f"wamid.in{n}"],
        ).fetchone()["id"]
        ids[f"{status}-{age}"] = db.execute(
            "INSERT INTO outbound_jobs (inbound_message_id, conversation_id, status, created_at) "
            "VALUES (%s, %s, %s, now() - %s::interval) RETURNING id",
            [inbound, conversation, status, age],
        ).fetchone()["id"]
    db.execute(
        "INSERT INTO messages (conversation_id, direction, author, idempotency_key, type, body, status, error) "
        "VALUES (%s, 'outbound', 'ai', 'k-failed', 'text', 'sorry', 'failed', "
        """'[{"code": 131047, "title": "Re-engagement message", "error_data": {"details": "24 hours"}}]')""",
        [conversation],
    )
    for status in ("todo", "todo", "doing"):
        db.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status) "
            "VALUES ('replies', 'send_reply', %s, '{}', %s)",
            [f"conversation:{conversation}", status],
        )
    ids["conversation"] = conversation
    return ids


def test_jobs_by_status(db: psycopg.Connection) -> None:
    seed(db)
    rows = {r["status"]: r for r in db.execute("SELECT * FROM waypost_jobs_by_status")}
    assert {status: r["jobs"] for status, r in rows.items()} == {"pending": 1, "running": 2, "done": 1, "failed": 1}
    assert rows["running"]["oldest_age"].total_seconds() >= 600


def test_stuck_jobs_lists_only_old_open_jobs(db: psycopg.Connection) -> None:
    ids = seed(db)
    stuck = {r["outbound_job_id"] for r in db.execute("SELECT * FROM waypost_stuck_jobs")}
    assert stuck == {ids["pending-5 minutes"], ids["running-10 minutes"]}


def test_failed_sends_show_the_error_code(db: psycopg.Connection) -> None:
    seed(db)
    [row] = db.execute("SELECT * FROM waypost_failed_sends").fetchall()
    assert (row["error_code"], row["error_title"], row["error_details"], row["contact"]) == (
        131047,
        "Re-engagement message",
        "24 hours",
        "1",
    )


def test_conversation_queues(db: psycopg.Connection) -> None:
    ids = seed(db)
    [row] = db.execute("SELECT * FROM waypost_conversation_queues").fetchall()
    assert (row["conversation_id"], row["waiting"], row["running"]) == (ids["conversation"], 2, 1)
