"""Username-era contacts: phone number only, BSUID only, or both; threading, merging, system messages."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg

from tests.conftest import post_webhook, wait_until
from tests.test_reply import job_with_status
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph

PHONE, BSUID, PARENT = "919810218674", "IN.1410018717833190", "IN.ENT.11815799212886844830"


def message(text: str, *, phone: str | None = PHONE, bsuid: str | None = BSUID) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": payloads.new_wamid(),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    if phone:
        item["from"] = phone
    if bsuid:
        item["from_user_id"] = bsuid
    return item


def contact(*, phone: str | None = PHONE, bsuid: str | None = BSUID, username: str | None = None) -> dict:
    entry: dict[str, Any] = {"profile": {"name": "Priya"}}
    if phone:
        entry["wa_id"] = phone
    if bsuid:
        entry["user_id"] = bsuid
        entry["country_code"] = "IN"
    if username:
        entry["profile"]["username"] = username
    return entry


def post(client: httpx.Client, item: dict, contacts: list[dict]) -> httpx.Response:
    response = post_webhook(client, payloads.dumps(payloads.inbound(item, contacts=contacts)))
    assert response.status_code == 200, response.text
    return response


def conversations(db: psycopg.Connection, *, live: bool = True) -> list[dict]:
    where = "WHERE deleted_at IS NULL" if live else ""
    return db.execute(f"SELECT * FROM conversations {where} ORDER BY id").fetchall()


def test_three_payload_shapes_are_stored_and_answered_with_the_right_address(
    client, db, fake_graph: FakeGraph, start_worker
) -> None:
    start_worker()
    # Meta's documented shape: phone number only
    post(client, message("hello", phone="16505551234", bsuid=None), [contact(phone="16505551234", bsuid=None)])
    # both identifiers (captured 2026 shape)
    post(client, message("hello", phone="447700900123", bsuid="GB.77"), [contact(phone="447700900123", bsuid="GB.77")])
    # BSUID only: a username user with no phone number shared
    post(
        client,
        message("hello", phone=None, bsuid="US.13491208655302741918"),
        [contact(phone=None, bsuid="US.13491208655302741918", username="priya.k")],
    )
    job_with_status(db, "done", count=3)

    rows = {(c["wa_id"], c["user_id"]): c for c in conversations(db)}
    assert set(rows) == {("16505551234", None), ("447700900123", "GB.77"), (None, "US.13491208655302741918")}
    assert rows[(None, "US.13491208655302741918")]["username"] == "priya.k"
    addressed = {(r.body.get("to"), r.body.get("recipient")) for r in fake_graph.accepted()}
    assert addressed == {("16505551234", None), ("447700900123", None), (None, "US.13491208655302741918")}
    replies = db.execute("SELECT status, wa_message_id FROM messages WHERE direction = 'outbound'").fetchall()
    assert len(replies) == 3 and all(r["status"] == "sent" and r["wa_message_id"] for r in replies)


def test_phone_only_and_bsuid_only_messages_thread_into_the_conversation_of_a_both_message(client, db) -> None:
    post(client, message("both"), [contact()])
    post(client, message("phone only", bsuid=None), [contact(bsuid=None)])
    post(client, message("bsuid only", phone=None), [contact(phone=None)])
    [conversation] = conversations(db)
    assert (conversation["wa_id"], conversation["user_id"]) == (PHONE, BSUID)
    bodies = [
        r["body"]
        for r in db.execute("SELECT body FROM messages WHERE conversation_id = %s ORDER BY id", [conversation["id"]])
    ]
    assert bodies == ["both", "phone only", "bsuid only"]


def test_a_both_message_merges_conversations_each_identifier_had_alone(client, db) -> None:
    post(client, message("phone first", bsuid=None), [contact(bsuid=None)])
    post(client, message("bsuid first", phone=None), [contact(phone=None)])
    assert len(conversations(db)) == 2
    post(client, message("now both"), [contact()])
    [kept] = conversations(db)
    assert (kept["wa_id"], kept["user_id"]) == (PHONE, BSUID)
    assert (
        db.execute("SELECT count(*) AS n FROM messages WHERE conversation_id = %s", [kept["id"]]).fetchone()["n"] == 3
    )
    assert (
        db.execute("SELECT count(*) AS n FROM outbound_jobs WHERE conversation_id = %s", [kept["id"]]).fetchone()["n"]
        == 3
    )
    assert db.execute("SELECT kind FROM notifications").fetchone()["kind"] == "conversations_merged"


def test_deliveries_at_once_find_one_conversation_and_merge_once(client, db) -> None:
    def at_once(items: list[dict[str, Any]], sender: dict) -> None:
        with ThreadPoolExecutor(len(items)) as pool:
            list(pool.map(lambda item: post(client, item, [sender]), items))

    # a new contact's first messages, all at once: one conversation is created, the others find it
    at_once([message(f"first {i}") for i in range(8)], contact())
    [first] = conversations(db)
    post(client, message("later, phone only", bsuid=None), [contact(bsuid=None)])
    assert [c["id"] for c in conversations(db)] == [first["id"]]

    # another contact known by each identifier alone, then messages with both at once: merged once,
    # the deliveries that looked the other conversation up before the merge find it retired under the lock
    other = {"phone": "919810218675", "bsuid": "IN.1410018717833191"}
    post(client, message("phone", phone=other["phone"], bsuid=None), [contact(phone=other["phone"], bsuid=None)])
    post(client, message("bsuid", phone=None, bsuid=other["bsuid"]), [contact(phone=None, bsuid=other["bsuid"])])
    both = [message(f"both {i}", phone=other["phone"], bsuid=other["bsuid"]) for i in range(8)]
    at_once(both, contact(phone=other["phone"], bsuid=other["bsuid"]))
    live = conversations(db)
    assert len(live) == 2 and (live[1]["wa_id"], live[1]["user_id"]) == (other["phone"], other["bsuid"])
    counts = db.execute(
        "SELECT conversation_id, count(*) AS n FROM messages GROUP BY conversation_id ORDER BY conversation_id"
    ).fetchall()
    assert [(row["conversation_id"], row["n"]) for row in counts] == [(first["id"], 9), (live[1]["id"], 10)]
    merged = db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'conversations_merged'").fetchone()
    assert merged["n"] == 1


def test_a_both_message_racing_a_new_bsuid_only_conversation_merges_it(client, db, database_url) -> None:
    """A message with both identifiers finds the contact's conversation by phone number and adds the
    BSUID to it, while another delivery, BSUID only, is creating a conversation of that BSUID. The
    second's commit makes the first's update a duplicate key: it looks again, finds both, merges."""
    post(client, message("phone first", bsuid=None), [contact(bsuid=None)])
    [by_phone] = conversations(db)
    with psycopg.connect(database_url) as holder, ThreadPoolExecutor(1) as pool:
        # the BSUID-only delivery, between creating its conversation and committing
        holder.execute(
            "SELECT waypost_resolve_conversation_v2(%s, NULL, %s, NULL, NULL, 'Priya', now())",
            [payloads.PHONE_NUMBER_ID, BSUID],
        )
        body = payloads.dumps(payloads.inbound(message("both"), contacts=[contact()]))
        both = pool.submit(post_webhook, client, body)
        # the both-identifiers delivery waits on the BSUID's uncommitted key
        wait_until(
            lambda: db.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone(),
            what="the delivery with both identifiers to wait for the BSUID's conversation",
        )
        holder.commit()
        answer = both.result(timeout=30)
    assert answer.status_code == 200, answer.text
    [kept] = conversations(db)
    assert (kept["id"], kept["wa_id"], kept["user_id"]) == (by_phone["id"], PHONE, BSUID)
    rows = db.execute("SELECT body FROM messages WHERE conversation_id = %s ORDER BY id", [kept["id"]]).fetchall()
    bodies = [row["body"] for row in rows]
    assert bodies == ["phone first", "both"]
    assert db.execute("SELECT kind FROM notifications").fetchone()["kind"] == "conversations_merged"


def system_message(kind: str, **system: str) -> dict[str, Any]:
    return {
        "id": payloads.new_wamid(),
        "timestamp": str(int(time.time())),
        "type": "system",
        "system": {"body": "Priya changed something", "type": kind, **system},
    }


def test_user_changed_number_moves_the_conversation_to_the_new_number(client, db) -> None:
    post(client, message("before", bsuid=None), [contact(bsuid=None)])
    post(client, {**system_message("user_changed_number", new_wa_id="919999999999"), "from": PHONE}, [])
    post(client, message("after", phone="919999999999", bsuid=None), [contact(phone="919999999999", bsuid=None)])
    [conversation] = conversations(db)
    assert conversation["wa_id"] == "919999999999"
    rows = db.execute(
        "SELECT type, body FROM messages WHERE conversation_id = %s ORDER BY id", [conversation["id"]]
    ).fetchall()
    assert [r["type"] for r in rows] == ["text", "system", "text"]
    # the system message is stored, never answered
    assert db.execute("SELECT count(*) AS n FROM outbound_jobs").fetchone()["n"] == 2


def test_user_changed_user_id_moves_the_conversation_to_the_new_bsuid(client, db) -> None:
    post(client, message("before", phone=None), [contact(phone=None)])
    post(client, {**system_message("user_changed_user_id", new_user_id="IN.2222"), "from_user_id": BSUID}, [])
    post(client, message("after", phone=None, bsuid="IN.2222"), [contact(phone=None, bsuid="IN.2222")])
    [conversation] = conversations(db)
    assert (conversation["wa_id"], conversation["user_id"]) == (None, "IN.2222")
    assert (
        db.execute("SELECT count(*) AS n FROM messages WHERE conversation_id = %s", [conversation["id"]]).fetchone()[
            "n"
        ]
        == 3
    )


def test_a_changed_number_also_replaces_the_bsuid_meta_regenerated(client, db) -> None:
    """Meta generates a new BSUID with a new number (system.user_id, beside system.previous_user_id):
    the next BSUID-only message from that person must find the same conversation."""
    post(client, message("before"), [contact()])
    change = system_message("user_changed_number", wa_id="919999999999", user_id="IN.NEWBSUID", previous_user_id=BSUID)
    post(client, {**change, "from": PHONE}, [])  # no contacts[] on system messages
    after = message("after, by BSUID only", phone=None, bsuid="IN.NEWBSUID")
    post(client, after, [contact(phone=None, bsuid="IN.NEWBSUID")])
    [conversation] = conversations(db)
    assert (conversation["wa_id"], conversation["user_id"]) == ("919999999999", "IN.NEWBSUID")
    bodies = db.execute("SELECT body FROM messages WHERE conversation_id = %s ORDER BY id", [conversation["id"]])
    assert [r["body"] for r in bodies.fetchall()] == ["before", "Priya changed something", "after, by BSUID only"]


def test_a_bsuid_change_with_no_sender_fields_is_found_by_the_previous_bsuid(client, db) -> None:
    """As Chatwoot's fixture has it: no `from`, no `from_user_id`, the pair in `system`."""
    post(client, message("before", phone=None), [contact(phone=None)])
    post(client, system_message("user_changed_user_id", previous_user_id=BSUID, user_id="IN.ROTATED"), [])
    post(client, message("after", phone=None, bsuid="IN.ROTATED"), [contact(phone=None, bsuid="IN.ROTATED")])
    [conversation] = conversations(db)
    assert conversation["user_id"] == "IN.ROTATED"
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 3


def test_redelivered_bsuid_only_payload_is_deduplicated(client, db) -> None:
    item = message("once", phone=None)
    first = post(client, item, [contact(phone=None)])
    again = post(client, item, [contact(phone=None)])
    assert (first.json()["messages"], again.json()["duplicates"]) == (1, 1)
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 1
    assert db.execute("SELECT count(*) AS n FROM outbound_jobs").fetchone()["n"] == 1


def test_parent_bsuid_and_contact_name_are_stored(client, db) -> None:
    entry = contact(phone=None)
    entry["parent_user_id"] = PARENT
    post(client, message("hello", phone=None), [entry])
    [conversation] = conversations(db)
    assert (conversation["parent_user_id"], conversation["contact_name"]) == (PARENT, "Priya")


def test_a_message_with_no_identifier_is_refused_not_dropped(client, db) -> None:
    response = post_webhook(
        client, payloads.dumps(payloads.inbound(message("who?", phone=None, bsuid=None), contacts=[]))
    )
    assert response.status_code == 400
    assert "'from' (phone number) or 'from_user_id' (BSUID)" in response.json()["error"]
    assert db.execute("SELECT error FROM webhook_events").fetchone()["error"]


def test_status_of_a_bsuid_addressed_reply_finds_its_message(client, db, fake_graph: FakeGraph, start_worker) -> None:
    start_worker()
    post(client, message("hello", phone=None), [contact(phone=None)])
    job_with_status(db, "done")
    [request] = fake_graph.accepted()
    assert request.body["recipient"] == BSUID and "to" not in request.body
    # a status that names the recipient by BSUID only (no recipient_id)
    status = payloads.status(request.wa_message_id or "", "delivered")
    del status["recipient_id"]
    status["recipient_user_id"] = BSUID
    response = post_webhook(client, payloads.dumps(payloads.statuses(status)))
    assert response.json()["statuses"] == {"applied": 1}
    assert db.execute("SELECT status FROM messages WHERE direction = 'outbound'").fetchone()["status"] == "delivered"
    assert asyncio.run(fake_graph.post_status(request.wa_message_id or "", "read")) == 200
