"""The webhook over real HTTP against a real database: handshake, signatures, journal, ingest."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json

import httpx
import psycopg
import pytest

from tests.conftest import APP_SECRET, VERIFY_TOKEN, post_webhook
from waypost.devtools import payloads

HOOK = "/api/webhooks/whatsapp"


def journal(db: psycopg.Connection) -> list[dict]:
    return db.execute("SELECT * FROM webhook_events ORDER BY id").fetchall()


def count(db: psycopg.Connection, table: str) -> int:
    return db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


# --- Meta's verification handshake -------------------------------------------------------------


def test_handshake_echoes_challenge_as_plain_text(client: httpx.Client) -> None:
    response = client.get(
        HOOK, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    )
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


def test_handshake_refuses_wrong_token_or_mode(client: httpx.Client) -> None:
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
    ):
        response = client.get(HOOK, params=params)
        assert response.status_code == 403, params
        assert "1" not in response.text


# --- signatures ----------------------------------------------------------------------------------


def test_signed_post_is_accepted(client: httpx.Client, db: psycopg.Connection) -> None:
    response = post_webhook(client, payloads.dumps(payloads.DOCUMENTED_INBOUND))
    assert response.status_code == 200, response.text
    assert [e["signature"] for e in journal(db)] == ["valid"]


def test_missing_signature_is_401_and_journaled(client: httpx.Client, db: psycopg.Connection) -> None:
    body = payloads.dumps(payloads.DOCUMENTED_INBOUND)
    response = post_webhook(client, body, secret=None)
    assert response.status_code == 401
    assert response.json()["code"] == "BAD_SIGNATURE"
    [event] = journal(db)
    assert (bytes(event["body"]), event["signature"], event["processed_at"]) == (body, "missing", None)
    assert count(db, "messages") == 0


def test_mismatched_signature_is_403(client: httpx.Client, db: psycopg.Connection) -> None:
    body = payloads.dumps(payloads.DOCUMENTED_INBOUND)
    for header in (payloads.sign("another-secret", body), "sha256=", "garbage", "sha256=é".encode()):
        response = post_webhook(client, body, secret=None, **{"X-Hub-Signature-256": header})
        assert response.status_code == 403, header
    assert {e["signature"] for e in journal(db)} == {"invalid"}
    assert count(db, "messages") == 0


def test_a_refused_signature_keeps_evidence_not_the_body(client: httpx.Client, db: psycopg.Connection) -> None:
    # 20 unsigned 4 MiB posts used to add 87 MB to the journal: now each keeps size, hash and 1 KiB.
    body = b'{"object": "whatsapp_business_account", "entry": [], "pad": "' + b"x" * 300_000 + b'"}'
    assert post_webhook(client, body, secret=None).status_code == 401
    assert post_webhook(client, body, secret="not-the-app-secret").status_code == 403
    refused = journal(db)
    assert [e["signature"] for e in refused] == ["missing", "invalid"]
    for event in refused:
        assert bytes(event["body"]) == body[:1024]
        assert event["body_size"] == len(body)
        assert bytes(event["body_sha256"]) == hashlib.sha256(body).digest()
    # a signed body is kept whole, with the same evidence
    signed = payloads.dumps(payloads.inbound(payloads.text_message("kept whole " + "y" * 5000)))
    assert post_webhook(client, signed).status_code == 200
    kept = journal(db)[-1]
    assert (bytes(kept["body"]), kept["body_size"]) == (signed, len(signed))
    assert bytes(kept["body_sha256"]) == hashlib.sha256(signed).digest()


def test_signature_covers_raw_non_ascii_bytes(client: httpx.Client, db: psycopg.Connection) -> None:
    # Sent unescaped: re-serialising the parsed JSON would give other bytes and fail the check.
    message = payloads.text_message("¿Lo tienen en azul? äöå 🙂", wa_id="34600000001")
    body = payloads.dumps(
        payloads.inbound(message, contacts=[{"profile": {"name": "Zoë Ñúñez"}, "wa_id": "34600000001"}])
    )
    assert "🙂".encode() in body
    response = post_webhook(client, body)
    assert response.status_code == 200, response.text
    row = db.execute(
        "SELECT m.body, c.contact_name FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    ).fetchone()
    assert row == {"body": "¿Lo tienen en azul? äöå 🙂", "contact_name": "Zoë Ñúñez"}
    # Escaped form of the same JSON has its own valid signature too.
    escaped = json.dumps(payloads.inbound(payloads.text_message("é"))).encode()
    assert post_webhook(client, escaped).status_code == 200


# --- size and shape ------------------------------------------------------------------------------


def test_oversize_body_is_413_and_journaled(client: httpx.Client, db: psycopg.Connection, settings) -> None:
    body = b'{"object": "' + b"x" * settings.max_body_bytes + b'"}'
    response = post_webhook(client, body)
    assert response.status_code == 413
    [event] = journal(db)
    assert event["body"] is None and "larger than" in event["error"]


def test_invalid_json_is_400_and_the_journal_keeps_body_and_error(client: httpx.Client, db: psycopg.Connection) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": [}'
    response = post_webhook(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_PAYLOAD"
    assert "not valid JSON" in response.json()["error"]
    [event] = journal(db)
    assert bytes(event["body"]) == body
    assert "not valid JSON" in event["error"] and event["processed_at"] is None


def test_wrong_shape_is_400_naming_the_field(client: httpx.Client, db: psycopg.Connection) -> None:
    payload = payloads.inbound(payloads.text_message("hi"))
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    response = post_webhook(client, payloads.dumps(payload))
    assert response.status_code == 400
    assert "entry.0.changes.0.value.messages.0.id: Field required" in response.json()["error"]
    assert "messages.0.id" in journal(db)[0]["error"]
    assert post_webhook(client, b'{"object": "page", "entry": []}').status_code == 400
    assert post_webhook(client, b"[1, 2]").status_code == 400


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ({"timestamp": "99999999999999"}, "timestamp"),  # past the year 9999
        ({"timestamp": "²"}, "timestamp"),  # a Unicode digit: isdigit() says yes, int() says no
        ({"timestamp": "9" * 5000}, "timestamp"),  # longer than int() parses
        ({"id": "w" * 1_000_000}, "id"),  # longer than a unique index entry can be
    ],
)
def test_a_bad_item_is_refused_alone_and_never_sinks_its_batch(
    client: httpx.Client, db: psycopg.Connection, broken: dict, why: str
) -> None:
    good = payloads.text_message("the good one", wa_id="111")
    bad = {**payloads.text_message("the broken one", wa_id="222"), **broken}
    late = payloads.status("wamid.sent-earlier", "delivered")
    body = payloads.envelope([payloads.change([good, bad]), payloads.change(statuses=[late, {**late, **broken}])])
    response = post_webhook(client, payloads.dumps(body))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["messages"] == 1 and answer["statuses"] == {"pending": 1}
    refused = {item["item"]: item for item in answer["refused"]}
    assert set(refused) == {"entry.0.changes.0.value.messages.1", "entry.0.changes.1.value.statuses.1"}
    assert all(why in item["reason"] for item in refused.values())
    assert [r["body"] for r in db.execute("SELECT body FROM messages").fetchall()] == ["the good one"]
    assert count(db, "outbound_jobs") == 1
    [event] = journal(db)
    assert event["processed_at"] is not None
    assert "messages.1" in event["error"] and "statuses.1" in event["error"]
    [note] = db.execute("SELECT kind, body FROM notifications").fetchall()
    assert note["kind"] == "webhook_item_refused" and "messages.1" in note["body"]


def test_a_batch_whose_every_item_is_refused_is_400_with_each_reason(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    bad = [{**payloads.text_message(f"m{i}"), "timestamp": "²"} for i in range(2)]
    response = post_webhook(client, payloads.dumps(payloads.inbound(*bad)))
    assert response.status_code == 400
    assert response.json()["code"] == "BAD_PAYLOAD"
    assert [item["id"] for item in response.json()["refused"]] == [m["id"] for m in bad]
    [event] = journal(db)
    assert event["processed_at"] is None and "refused 2 item(s)" in event["error"]
    assert db.execute("SELECT kind FROM notifications").fetchone()["kind"] == "webhook_item_refused"
    # Meta delivers a 400 again, for days: journaled each time, the operators told once
    assert post_webhook(client, payloads.dumps(payloads.inbound(*bad))).status_code == 400
    assert len(journal(db)) == 2 and count(db, "notifications") == 1


def test_a_lone_surrogate_is_cleaned_in_its_own_item(client: httpx.Client, db: psycopg.Connection) -> None:
    # JSON allows the escape of half a UTF-16 pair; PostgreSQL cannot store it, and it used to sink the batch.
    good, odd = payloads.text_message("fine", wa_id="111"), payloads.text_message("PLACEHOLDER", wa_id="222")
    body = payloads.dumps(payloads.inbound(good, odd)).replace(b"PLACEHOLDER", b"half an emoji \\ud83d")
    response = post_webhook(client, body)
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == 2
    bodies = [r["body"] for r in db.execute("SELECT body FROM messages ORDER BY body").fetchall()]
    assert bodies == ["fine", "half an emoji \ufffd"]


# --- ingest ----------------------------------------------------------------------------------------


def test_documented_example_is_stored_with_conversation_and_job(client: httpx.Client, db: psycopg.Connection) -> None:
    response = post_webhook(client, payloads.dumps(payloads.DOCUMENTED_INBOUND), **{"X-Request-ID": "req-documented-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-documented-1"
    assert response.json()["messages"] == 1 and response.json()["jobs"] == 1

    conversation = db.execute("SELECT * FROM conversations").fetchone()
    assert conversation["phone_number_id"] == "106540352242922"
    assert conversation["wa_id"] == "16505551234"
    assert conversation["contact_name"] == "Sheena Nelson"
    assert conversation["ai_enabled"] is True and conversation["deleted_at"] is None
    assert int(conversation["last_inbound_at"].timestamp()) == 1749416383

    message = db.execute("SELECT * FROM messages").fetchone()
    assert message["wa_message_id"] == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert (message["direction"], message["author"], message["type"], message["status"]) == (
        "inbound",
        "contact",
        "text",
        "received",
    )
    assert message["body"] == "Does it come in another color?"
    assert int(message["contact_sent_at"].timestamp()) == 1749416383
    assert message["payload"]["text"] == {"body": "Does it come in another color?"}

    job = db.execute("SELECT * FROM outbound_jobs").fetchone()
    assert job["inbound_message_id"] == message["id"]
    assert job["conversation_id"] == conversation["id"]
    assert job["request_id"] == "req-documented-1"
    queued = db.execute("SELECT * FROM procrastinate_jobs WHERE id = %s", [job["procrastinate_job_id"]]).fetchone()
    assert queued["task_name"] == "send_reply" and queued["queue_name"] == "replies"
    assert queued["lock"] == f"conversation:{conversation['id']}"
    assert queued["args"] == {"outbound_job_id": job["id"], "request_id": "req-documented-1"}
    assert journal(db)[0]["request_id"] == "req-documented-1"
    assert journal(db)[0]["processed_at"] is not None


def test_generated_request_id_is_returned_and_stored(client: httpx.Client, db: psycopg.Connection) -> None:
    response = post_webhook(
        client, payloads.dumps(payloads.inbound(payloads.text_message("hi"))), **{"X-Request-ID": "bad id with spaces"}
    )
    request_id = response.headers["x-request-id"]
    assert request_id != "bad id with spaces" and len(request_id) == 32
    assert journal(db)[0]["request_id"] == request_id
    assert db.execute("SELECT request_id FROM outbound_jobs").fetchone()["request_id"] == request_id


def test_batch_of_three_messages_in_two_entries(client: httpx.Client, db: psycopg.Connection) -> None:
    first = payloads.change([payloads.text_message("one", wa_id="111"), payloads.text_message("two", wa_id="222")])
    second = payloads.change([payloads.text_message("three", wa_id="111")], phone_number_id="999000999")
    response = post_webhook(client, payloads.dumps(payloads.envelope([first], [second])))
    assert response.status_code == 200
    assert response.json()["messages"] == 3
    assert count(db, "messages") == 3
    assert count(db, "outbound_jobs") == 3
    assert count(db, "procrastinate_jobs") == 3
    # Same contact on two business numbers is two conversations.
    assert count(db, "conversations") == 3


def test_redelivery_creates_nothing_new_and_still_answers_200(client: httpx.Client, db: psycopg.Connection) -> None:
    body = payloads.dumps(payloads.DOCUMENTED_INBOUND)
    first, again = post_webhook(client, body), post_webhook(client, body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["duplicates"] == 1 and again.json()["jobs"] == 0
    assert (count(db, "messages"), count(db, "outbound_jobs"), count(db, "procrastinate_jobs")) == (1, 1, 1)
    assert len(journal(db)) == 2  # every delivery is journaled


def test_concurrent_duplicate_deliveries_give_one_message_and_one_job(web, db: psycopg.Connection) -> None:
    bodies = [payloads.dumps(payloads.inbound(payloads.text_message(f"m{i}", wa_id=f"4477{i}"))) for i in range(5)]

    def deliver(body: bytes) -> int:
        with httpx.Client(base_url=web.url, timeout=10) as http:
            return post_webhook(http, body).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(deliver, [body for body in bodies for _ in range(4)]))
    assert codes == [200] * 20
    assert (count(db, "messages"), count(db, "outbound_jobs"), count(db, "procrastinate_jobs")) == (5, 5, 5)
    assert count(db, "conversations") == 5


def test_unknown_types_and_fields_are_stored_without_a_reply(client: httpx.Client, db: psycopg.Connection) -> None:
    hologram = {
        "from": "16505551234",
        "id": payloads.new_wamid(),
        "timestamp": "1749416390",
        "type": "hologram",
        "hologram": {"frames": 3},
        "brand_new_field": {"x": 1},
    }
    unsupported = {
        "from": "16505551234",
        "id": payloads.new_wamid(),
        "timestamp": "1749416391",
        "type": "unsupported",
        "errors": [{"code": 131051, "title": "Unsupported"}],
    }
    payload = payloads.inbound(hologram, unsupported)
    payload["entry"][0]["changes"][0]["value"]["surprise"] = True
    payload["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "X"}})
    response = post_webhook(client, payloads.dumps(payload))
    assert response.status_code == 200, response.text
    rows = db.execute("SELECT type, body, payload FROM messages ORDER BY id").fetchall()
    assert [r["type"] for r in rows] == ["hologram", "unsupported"]
    assert rows[0]["payload"]["brand_new_field"] == {"x": 1}
    assert rows[1]["payload"]["errors"][0]["code"] == 131051
    assert count(db, "outbound_jobs") == 0


def test_platform_errors_become_notifications(client: httpx.Client, db: psycopg.Connection) -> None:
    payload = payloads.envelope([payloads.change()])
    payload["entry"][0]["changes"][0]["value"]["errors"] = [{"code": 131000, "title": "Something"}]
    assert post_webhook(client, payloads.dumps(payload)).status_code == 200
    note = db.execute("SELECT kind, body FROM notifications").fetchone()
    assert note["kind"] == "platform_error" and "131000" in note["body"]


def test_a_message_from_a_deleted_conversation_starts_a_new_one(client: httpx.Client, db: psycopg.Connection) -> None:
    post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message("first"))))
    db.execute("UPDATE conversations SET deleted_at = now()")
    post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message("again"))))
    rows = db.execute("SELECT deleted_at IS NULL AS live FROM conversations ORDER BY id").fetchall()
    assert [r["live"] for r in rows] == [False, True]


def test_health_endpoints(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["schema"] == "ok"


def test_secret_is_compared_not_leaked(client: httpx.Client) -> None:
    response = post_webhook(client, b"{}", secret="nope")
    assert APP_SECRET not in response.text
