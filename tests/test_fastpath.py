"""The common webhook in one statement (webhook/fastpath.py): what fails in it loses nothing.

A plain batch (text messages, statuses) is stored, queued and journaled by waypost_store_webhook_v1
alone. When the database refuses an item, nothing of that statement is written and the general path
stores the batch item by item; any other failure journals the body apart and answers 500.
"""

from __future__ import annotations

import httpx
import psycopg

from tests.conftest import post_webhook
from tests.test_transactional_defer import fail_after_the_defer_of
from waypost.devtools import payloads


def counts(db: psycopg.Connection) -> tuple[int, int, int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM outbound_jobs) AS j,"
        " (SELECT count(*) FROM procrastinate_jobs) AS q, (SELECT count(*) FROM webhook_events) AS e"
    ).fetchone()
    return row["m"], row["j"], row["q"], row["e"]


def two_messages() -> bytes:
    a = payloads.text_message("first", wa_id="15550000001", wamid="wamid.a")
    b = payloads.text_message("second", wa_id="15550000002", wamid="wamid.b")
    return payloads.dumps(payloads.inbound(a, b))


def test_a_refused_item_falls_back_to_storing_the_batch_item_by_item(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    # 22000 (a data exception) after wamid.b's job was queued: the one statement is taken back whole,
    # then the general path keeps wamid.a with its job and names wamid.b in the journal.
    fail_after_the_defer_of(db, "wamid.b", "22000")
    response = post_webhook(client, two_messages())
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["refused"]] == ["wamid.b"]
    assert counts(db) == (1, 1, 1, 1)
    event = db.execute("SELECT processed_at, error FROM webhook_events").fetchone()
    assert event["processed_at"] is not None and "wamid.b" in event["error"]
    assert db.execute("SELECT kind FROM notifications").fetchone()["kind"] == "webhook_item_refused"


def test_a_failed_statement_journals_the_body_apart_and_a_redelivery_is_stored_once(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    fail_after_the_defer_of(db, "wamid.b", "XX000")  # not an item's fault: Meta must deliver again
    body = two_messages()
    response = post_webhook(client, body)
    assert response.status_code == 500 and response.json()["code"] == "PROCESSING_FAILED"
    assert counts(db) == (0, 0, 0, 1)  # nothing of the batch, but the body is kept with the reason
    event = db.execute("SELECT body, processed_at, error FROM webhook_events").fetchone()
    assert bytes(event["body"]) == body and event["processed_at"] is None
    assert event["error"].startswith("InternalError_: refused after the defer")

    db.execute("DROP TRIGGER test_fail_link ON outbound_jobs")
    assert post_webhook(client, body).json()["jobs"] == 2
    assert post_webhook(client, body).json()["duplicates"] == 2
    assert counts(db) == (2, 2, 2, 3)
