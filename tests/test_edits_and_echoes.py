"""Edits, deletions and messages sent from the phone app (coexistence echoes), as stored, as the AI
treats them and as the operator sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from tests.conftest import ServerThread, post_webhook, settled, wait_until
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.devtools.simulate import simulate
from waypost.settings import Settings
from waypost.sql import query
from webhook.app import create_app
from webhook.changes import MessageChange
from webhook.payload import parse


def deliver(client: httpx.Client, message: dict[str, Any]) -> str:
    assert post_webhook(client, payloads.dumps(payloads.inbound(message))).status_code == 200
    return str(message["id"])


def deliver_echo(client: httpx.Client, echo: dict[str, Any]) -> str:
    assert post_webhook(client, payloads.dumps(payloads.echoes(echo))).status_code == 200
    return str(echo["id"])


def shown(inbox: Inbox, db: psycopg.Connection) -> tuple[list[dict[str, Any]], str]:
    """The conversation's messages as the JSON API lists them, and its page."""
    cid = conversation_id(db)
    listed = inbox.get(f"/api/inbox/conversations/{cid}").json()["messages"]
    return listed, inbox.get(f"/inbox/conversations/{cid}").text


def by_wamid(messages: list[dict[str, Any]], wamid: str) -> dict[str, Any]:
    return next(m for m in messages if m["wa_message_id"] == wamid)


def replies(fake_graph: FakeGraph) -> list[str]:
    return [r.body["text"]["body"] for r in fake_graph.accepted()]


def test_an_edit_updates_the_message_in_place_keeps_the_earlier_text_and_applies_once(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    original = deliver(client, payloads.text_message("I want 2 boxes"))
    edit = payloads.edit_message(original, "I want 3 boxes")
    body = payloads.dumps(payloads.inbound(edit))
    for _ in range(2):  # Meta redelivers: applied once
        assert post_webhook(client, body).status_code == 200

    row = db.execute("SELECT body, edited_at FROM messages WHERE wa_message_id = %s", (original,)).fetchone()
    assert row["body"] == "I want 3 boxes" and row["edited_at"] is not None
    changes = db.execute("SELECT kind, body_before, body_after FROM message_changes").fetchall()
    assert changes == [{"kind": "edit", "body_before": "I want 2 boxes", "body_after": "I want 3 boxes"}]

    messages, page = shown(inbox, db)
    assert [m["wa_message_id"] for m in messages] == [original]  # the edit shows on its message
    listed = by_wamid(messages, original)
    assert listed["body"] == "I want 3 boxes" and listed["edited_at"] is not None
    assert listed["earlier_texts"] == ["I want 2 boxes"]
    assert "data-edited" in page and '<p class="earlier">I want 2 boxes</p>' in page

    # a second edit keeps both earlier texts, in order
    deliver(client, payloads.edit_message(original, "I want 4 boxes"))
    messages, _ = shown(inbox, db)
    assert by_wamid(messages, original)["earlier_texts"] == ["I want 2 boxes", "I want 3 boxes"]
    assert by_wamid(messages, original)["body"] == "I want 4 boxes"


def test_an_edit_of_an_unanswered_message_is_answered_once_in_its_edited_form(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    original = deliver(client, payloads.text_message("hello"))
    deliver(client, payloads.edit_message(original, "what are your opening hours?"))
    start_worker()  # the reply job reads the message when it runs: after the edit
    wait_until(lambda: fake_graph.accepted(), what="the reply")
    settled(db)
    assert len(replies(fake_graph)) == 1
    assert "Monday to Friday" in replies(fake_graph)[0]  # the hours rule, not the greeting
    assert db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'message_edited'").fetchone()["n"] == 0


def test_an_edit_of_an_answered_message_is_shown_and_told_but_not_answered_twice(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    database_url: str,
) -> None:
    start_worker()
    original = deliver(client, payloads.text_message("hello"))
    wait_until(lambda: fake_graph.accepted(), what="the first reply")
    settled(db)
    deliver(client, payloads.edit_message(original, "what does it cost?"))
    settled(db)
    assert len(replies(fake_graph)) == 1
    notice = db.execute("SELECT body, message_id FROM notifications WHERE kind = 'message_edited'").fetchone()
    assert 'Before: "hello" Now: "what does it cost?"' in notice["body"]
    create_operator(database_url)
    inbox = Inbox(client)
    messages, _ = shown(inbox, db)
    assert by_wamid(messages, original)["earlier_texts"] == ["hello"]
    assert notice["message_id"] == by_wamid(messages, original)["id"]


def test_a_revoke_marks_the_message_deleted_keeps_its_text_and_cancels_its_pending_reply(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    original = deliver(client, payloads.text_message("my card number is 4111"))
    deliver(client, payloads.revoke_message(original))
    row = db.execute("SELECT id, body, revoked_at FROM messages WHERE wa_message_id = %s", (original,)).fetchone()
    assert row["body"] == "my card number is 4111" and row["revoked_at"] is not None
    job = db.execute("SELECT status, skip_reason FROM outbound_jobs WHERE inbound_message_id = %s", (row["id"],))
    assert job.fetchone() == {"status": "skipped", "skip_reason": "the contact deleted the message"}

    # the AI's history forgets it
    later = deliver(client, payloads.text_message("sorry, wrong chat"))
    later_id = db.execute("SELECT id, conversation_id FROM messages WHERE wa_message_id = %s", (later,)).fetchone()
    history = db.execute(
        query("reply_history"),
        {
            "conversation_id": later_id["conversation_id"],
            "message_id": later_id["id"],
            "limit": 10,
        },
    ).fetchall()
    assert [h["body"] for h in history] == ["sorry, wrong chat"]

    messages, page = shown(inbox, db)
    listed = by_wamid(messages, original)
    assert listed["deleted_by"] == "contact" and listed["body"] == "my card number is 4111"
    assert "deleted by the contact" in page and "my card number is 4111" in page


def test_an_echo_shows_as_sent_from_the_phone_app_pauses_the_ai_once_and_is_idempotent(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    database_url: str,
) -> None:
    start_worker()
    deliver(client, payloads.text_message("hello"))
    wait_until(lambda: fake_graph.accepted(), what="the AI's reply")
    settled(db)
    echo = payloads.echo_message("Hi, this is Ana from the shop, I'll help you myself")
    body = payloads.dumps(payloads.echoes(echo))
    for _ in range(2):
        assert post_webhook(client, body).status_code == 200
    rows = db.execute("SELECT * FROM messages WHERE wa_message_id = %s", (echo["id"],)).fetchall()
    assert len(rows) == 1
    assert (rows[0]["direction"], rows[0]["author"], rows[0]["source"], rows[0]["status"]) == (
        "outbound",
        "operator",
        "phone_app",
        "sent",
    )
    conversation = db.execute("SELECT ai_enabled, last_inbound_at FROM conversations").fetchone()
    assert conversation["ai_enabled"] is False
    paused = db.execute("SELECT body FROM notifications WHERE kind = 'ai_paused'").fetchall()
    assert len(paused) == 1 and "WhatsApp Business app" in paused[0]["body"]

    # the next message from the contact is left to the owner
    deliver(client, payloads.text_message("what are your opening hours?"))
    wait_until(
        lambda: db.execute("SELECT 1 FROM notifications WHERE kind = 'operator_needed'").fetchone(),
        what="the operator_needed notice",
    )
    settled(db)
    assert len(fake_graph.accepted()) == 1
    # an echo does not open or extend the 24-hour window
    after = db.execute("SELECT last_inbound_at FROM conversations").fetchone()["last_inbound_at"]
    assert after >= conversation["last_inbound_at"]

    create_operator(database_url)
    inbox = Inbox(client)
    messages, page = shown(inbox, db)
    listed = by_wamid(messages, echo["id"])
    assert (listed["direction"], listed["source"]) == ("outbound", "phone_app")
    assert 'data-source="phone_app"' in page and 'data-ai="paused"' in page


def test_with_the_setting_off_an_echo_does_not_pause_the_ai(settings: Settings, db: psycopg.Connection) -> None:
    app = create_app(settings.model_copy(update={"pause_ai_on_phone_reply": False}))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        deliver(client, payloads.text_message("hello"))
        deliver_echo(client, payloads.echo_message("I'm on it"))
    assert db.execute("SELECT ai_enabled FROM conversations").fetchone()["ai_enabled"] is True
    assert db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'ai_paused'").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM messages WHERE source = 'phone_app'").fetchone()["n"] == 1


def test_a_reaction_edit_or_deletion_from_the_phone_app_does_not_pause_the_ai(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    inbound = payloads.text_message("hello")
    deliver(client, inbound)
    sent = payloads.echo_message("We open at 9")
    deliver_echo(client, sent)  # a reply from the phone: paused
    db.execute("UPDATE conversations SET ai_enabled = true")  # an operator resumes the AI
    db.execute("DELETE FROM notifications WHERE kind = 'ai_paused'")

    def echoed(kind: str, content: dict[str, Any]) -> dict[str, Any]:
        item = payloads.echo_message("")
        del item["text"]
        return {**item, "type": kind, kind: content}

    deliver_echo(client, echoed("reaction", {"message_id": inbound["id"], "emoji": "👍"}))
    edited = {"type": "text", "text": {"body": "We open at 10"}}
    deliver_echo(client, echoed("edit", {"original_message_id": sent["id"], "message": edited}))
    deliver_echo(client, echoed("revoke", {"original_message_id": sent["id"]}))
    assert db.execute("SELECT ai_enabled FROM conversations").fetchone()["ai_enabled"] is True
    assert db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'ai_paused'").fetchone()["n"] == 0
    changed = db.execute("SELECT body, revoked_at FROM messages WHERE wa_message_id = %s", (sent["id"],)).fetchone()
    assert changed["body"] == "We open at 10" and changed["revoked_at"] is not None


def test_an_edit_or_revoke_of_an_unknown_message_is_journaled_shown_and_applied_if_it_arrives(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    deliver(client, payloads.edit_message("wamid.never-seen", "the new text"))
    deliver(client, payloads.revoke_message("wamid.never-seen-either"))
    events = db.execute("SELECT processed_at, error FROM webhook_events ORDER BY id").fetchall()
    assert all(e["processed_at"] is not None and e["error"] is None for e in events)
    messages, page = shown(inbox, db)
    unmatched = [m["unmatched_change"] for m in messages]
    assert unmatched == [
        {"kind": "edit", "original_wa_message_id": "wamid.never-seen", "body": "the new text"},
        {"kind": "revoke", "original_wa_message_id": "wamid.never-seen-either", "body": None},
    ]
    assert "edit of a message Waypost does not have</em>: the new text" in page
    assert "deletion of a message Waypost does not have" in page

    # Meta does not promise order: the message itself arrives late, and takes its edit then
    deliver(client, payloads.text_message("the old text", wamid="wamid.never-seen"))
    messages, _ = shown(inbox, db)
    late = by_wamid(messages, "wamid.never-seen")
    assert (late["body"], late["earlier_texts"]) == ("the new text", ["the old text"])
    assert len(messages) == 2  # the applied edit is shown on its message, the revoke still alone


def test_a_contact_cannot_edit_or_delete_the_businesss_messages(client: httpx.Client, db: psycopg.Connection) -> None:
    deliver(client, payloads.text_message("hello"))
    ours = deliver_echo(client, payloads.echo_message("We open at 9"))
    deliver(client, payloads.edit_message(ours, "We are closed forever"))
    deliver(client, payloads.revoke_message(ours))
    row = db.execute("SELECT body, edited_at, revoked_at FROM messages WHERE wa_message_id = %s", (ours,)).fetchone()
    assert row == {"body": "We open at 9", "edited_at": None, "revoked_at": None}
    pending = db.execute("SELECT count(*) AS n FROM message_changes WHERE message_id IS NULL").fetchone()
    assert pending["n"] == 2  # shown as changes of a message Waypost does not have


def test_an_edit_without_an_original_id_is_stored_and_shown_as_it_came(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    odd = {**payloads.text_message("x"), "type": "edit", "edit": {"message": {"type": "text"}}}
    del odd["text"]
    deliver(client, odd)
    messages, page = shown(inbox, db)
    assert [(m["type"], m["unmatched_change"]) for m in messages] == [("edit", None)]
    assert "<em>[edit]</em>" in page


def test_waypost_simulate_sends_media_an_edit_a_revoke_and_an_echo(
    settings: Settings,
    web: Any,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
) -> None:
    """What `python3 bootstrap.py dev` users see: the fake Graph API serves the simulated files."""
    start_worker()
    url = web.url + "/api/webhooks/whatsapp"

    def run(text: str, kind: str, wa_id: str = "15551230000") -> tuple[bool, str]:
        return asyncio.run(
            simulate(settings, text, wa_id=wa_id, name="Dev Tester", url=url, wait_seconds=20, kind=kind)
        )

    replied, report = run("how much does this cost?", "image")
    assert replied and "← reply" in report
    replied, report = run("", "voice")
    assert replied and settings.media_unreadable_reply in report  # the AI cannot listen yet
    replied, report = run("", "document")
    assert replied
    wait_until(
        lambda: db.execute("SELECT count(*) AS n FROM media WHERE status = 'stored'").fetchone()["n"] == 3,
        what="the three files stored",
    )
    assert (run("a price list please", "edit")[0], run("", "revoke")[0], run("I'll answer this one", "echo")[0]) == (
        True,
        True,
        True,
    )
    latest = db.execute("SELECT body, edited_at, revoked_at FROM messages WHERE type = 'document'").fetchone()
    assert latest["body"] == "a price list please" and latest["edited_at"] and latest["revoked_at"]
    echo = db.execute("SELECT source, author FROM messages WHERE source = 'phone_app'").fetchone()
    assert echo == {"source": "phone_app", "author": "operator"}


def test_the_shapes_read_from_edits_revokes_and_echoes() -> None:
    """docs/whatsapp.md: Meta's documented shapes, and the plausible variants read defensively."""
    caption_edit = {
        **payloads.edit_message("wamid.photo", "x"),
        "edit": {
            "original_message_id": "wamid.photo",
            "message": {"type": "image", "image": {"id": "m1", "caption": "the blue one"}},
        },
    }
    flat_edit = {
        **payloads.edit_message("wamid.a", "x"),
        "edit": {"original_message_id": "wamid.a", "text": {"body": "flat"}},
    }
    batch = parse(payloads.dumps(payloads.inbound(caption_edit, flat_edit, payloads.revoke_message("wamid.b"))))
    assert [(m.type, m.body, m.change) for m in batch.messages] == [
        ("edit", None, MessageChange("edit", "wamid.photo", "the blue one")),
        ("edit", None, MessageChange("edit", "wamid.a", "flat")),
        ("revoke", None, MessageChange("revoke", "wamid.b", None)),
    ]
    assert not batch.messages[0].needs_reply and not batch.messages[2].needs_reply

    by_bsuid = {**payloads.echo_message("hi"), "to_user_id": "US.123"}
    del by_bsuid["to"]
    nowhere = payloads.echo_message("lost")
    del nowhere["to"]
    document = payloads.echoes(payloads.echo_message("sure", to="15550001111"), by_bsuid, nowhere)
    # a fixture seen in public code nests them under `messages`: read too
    document["entry"].append(
        {
            "id": "w",
            "changes": [{"field": "smb_message_echoes", "value": {**document["entry"][0]["changes"][0]["value"]}}],
        }
    )
    value = document["entry"][1]["changes"][0]["value"]
    value["messages"] = [payloads.echo_message("nested")]
    del value["message_echoes"]
    # history and smb_app_state_sync stay in the journal only
    document["entry"].append({"id": "w", "changes": [{"field": "history", "value": {"history": []}}]})
    batch = parse(payloads.dumps(document))
    assert [(e.wa_id, e.user_id, e.body) for e in batch.echoes] == [
        ("15550001111", None, "sure"),
        (None, "US.123", "hi"),
        ("16505551234", None, "nested"),
    ]
    assert [(r.item, r.reason) for r in batch.refused] == [
        (
            "entry.0.changes.0.value.message_echoes.2",
            "Value error, an echo needs 'to' (phone number) or 'to_user_id' (BSUID)",
        )
    ]
    assert batch.ignored_changes == ["entry.2.changes.0: field 'history'"]


def test_a_message_deleted_while_its_reply_is_between_attempts_is_not_answered_nor_quoted(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    """A reply job already started (waiting to retry) when the contact deletes the message: the next
    attempt skips it, and a later reply quoting the deleted message does not give the AI its words."""
    original = deliver(client, payloads.text_message("my card number is 4111"))
    row = db.execute("SELECT id, conversation_id FROM messages WHERE wa_message_id = %s", (original,)).fetchone()
    # as if a first attempt had started and failed: the job is 'running', which the revoke leaves alone
    db.execute("UPDATE outbound_jobs SET status = 'running', attempts = 1 WHERE inbound_message_id = %s", (row["id"],))
    deliver(client, payloads.revoke_message(original))
    start_worker()
    job = wait_until(
        lambda: db.execute(
            "SELECT status, skip_reason FROM outbound_jobs WHERE inbound_message_id = %s AND status <> 'running'",
            (row["id"],),
        ).fetchone(),
        what="the reply job to finish",
    )
    assert job == {"status": "skipped", "skip_reason": "the contact deleted the message"}
    assert replies(fake_graph) == []

    quoting = payloads.text_message("did you get it?")
    quoting["context"] = {"from": "15550001111", "id": original}
    later = deliver(client, quoting)
    later_id = db.execute("SELECT id FROM messages WHERE wa_message_id = %s", (later,)).fetchone()["id"]
    history = db.execute(
        query("reply_history"),
        {"conversation_id": row["conversation_id"], "message_id": later_id, "limit": 10},
    ).fetchall()
    assert [(h["body"], h["quoted_text"]) for h in history] == [("did you get it?", None)]
