"""Consent: opt-out and opt-in words, Meta's user_preferences webhook, and operators' blocks through
the block-users API (the fake Graph API enforces Meta's 24-hour rule)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import post_webhook, settled, wait_for
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.consent_words import ConsentWords, Match, confirmation
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings
from webhook.payload import parse

CONTACT = "16505551234"


def words() -> ConsentWords:
    settings = Settings()
    return ConsentWords.of(settings.opt_out_words, settings.opt_in_words)


def test_only_a_whole_message_is_an_opt_out_or_opt_in_word() -> None:
    consent = words()
    for text in ("STOP", " stop! ", "Stop 🙏", "unsubscribe.", "Opt out", "BAJA", "Désabonner", "стоп"):
        assert consent.match("text", text) == "opt_out", text
    for text in ("START", "start!", "Resume"):
        assert consent.match("text", text) == "opt_in", text
    for text in ("we have got to STOP this bill", "stop it now", "please stop", "stopwatch", "", "¿?"):
        assert consent.match("text", text) is None, text
    assert consent.match("image", "STOP") is None  # a caption is not a message of its own
    custom = ConsentWords.of(["halt", " Basta! "], ["go"])
    assert custom.match("text", "basta") == "opt_out" and custom.match("text", "STOP") is None


def test_a_word_s_language_chooses_its_confirmation(monkeypatch: Any) -> None:
    consent = words()
    assert consent.find("text", "BAJA") == Match("opt_out", "es")
    assert consent.find("text", "Stop!") == Match("opt_out", "en")
    assert consent.find("text", "старт") == Match("opt_in", "ru")
    settings = Settings()
    assert confirmation(settings.opt_out_confirmations, "default", "es").startswith("Ya no recibirás")
    assert confirmation(settings.opt_out_confirmations, "default", "pt_BR").startswith("Você não")
    assert confirmation(settings.opt_out_confirmations, "default", "en") == "default"
    assert confirmation(settings.opt_out_confirmations, "default", "") == "default"
    monkeypatch.setenv("WAYPOST_OPT_OUT_WORDS", "halt, sv:sluta, pt-BR:parar")
    monkeypatch.setenv("WAYPOST_OPT_OUT_CONFIRMATIONS", '{"SV": "Du får inga fler"}')
    custom = Settings()
    table = ConsentWords.of(custom.opt_out_words, custom.opt_in_words)
    assert table.find("text", "Halt") == Match("opt_out", "")
    assert table.find("text", "SLUTA!") == Match("opt_out", "sv")
    assert table.find("text", "parar") == Match("opt_out", "pt_br")
    assert confirmation(custom.opt_out_confirmations, "x", "sv") == "Du får inga fler"
    monkeypatch.setenv("WAYPOST_OPT_OUT_CONFIRMATIONS", "not json")
    with pytest.raises(ValueError, match="JSON object of language to text"):
        Settings()


def test_user_preferences_are_parsed_and_unknown_values_ignored() -> None:
    batch = parse(payloads.dumps(payloads.user_preferences("stop", timestamp=1_700_000_000)))
    assert [(p.wa_id, p.kind, p.value) for p in batch.preferences] == [(CONTACT, "opt_out", "stop")]
    assert batch.items == 1 and not batch.refused
    other = parse(payloads.dumps(payloads.user_preferences("maybe")))
    assert not other.preferences and other.ignored_changes and not other.refused


def deliver(client: httpx.Client, text: str, wa_id: str = CONTACT, times: int = 1) -> str:
    message = payloads.text_message(text, wa_id=wa_id)
    body = payloads.dumps(payloads.inbound(message))
    for _ in range(times):  # Meta redelivers
        assert post_webhook(client, body).status_code == 200
    return str(message["id"])


def sent_texts(fake_graph: FakeGraph, wa_id: str = CONTACT) -> list[str]:
    return [r.body["text"]["body"] for r in fake_graph.accepted() if r.body.get("to") == wa_id]


def consent_of(inbox: Inbox, cid: int) -> dict[str, Any]:
    answer = inbox.get(f"/api/inbox/conversations/{cid}")
    assert answer.status_code == 200, answer.text
    return answer.json()["consent"]


def settle(db: psycopg.Connection, worker: Any) -> None:
    try:
        settled(db, timeout=8)
    except AssertionError:
        print(db.execute("SELECT id, status, skip_reason, last_error, attempts FROM outbound_jobs").fetchall())
        print(db.execute("SELECT id, direction, status, body, error FROM messages").fetchall())
        print(db.execute("SELECT id, status, task_name FROM procrastinate_jobs").fetchall())
        print(worker.output()[-4000:])
        raise


def may_receive_marketing(db: psycopg.Connection, wa_id: str = CONTACT) -> bool:
    row = db.execute(
        "SELECT waypost_may_receive_marketing_v1(%s, %s, NULL) AS may", (payloads.PHONE_NUMBER_ID, wa_id)
    ).fetchone()
    assert row is not None
    return bool(row["may"])


def test_stop_opts_out_once_with_one_confirmation_and_start_reverses_it(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    worker = start_worker()
    sentence = deliver(client, "we have got to STOP this bill")
    settled(db)
    assert settings.opt_out_confirmation not in sent_texts(fake_graph)  # the AI's to answer, as any message
    assert db.execute("SELECT count(*) AS n FROM consent_events").fetchone() == {"n": 0}
    assert may_receive_marketing(db)

    stop = deliver(client, "STOP", times=2)
    settle(db, worker)
    assert deliver(client, "STOP") != stop  # (a new message id: below, only the redelivery is checked)
    settle(db, worker)
    confirmations = [t for t in sent_texts(fake_graph) if t == settings.opt_out_confirmation]
    assert len(confirmations) == 2  # one per STOP message, none for its redelivery
    replied = db.execute(
        "SELECT count(*) AS n FROM messages o JOIN messages i ON i.id = o.reply_to_message_id"
        " WHERE i.wa_message_id = %s AND o.body = %s",
        (stop, settings.opt_out_confirmation),
    ).fetchone()
    assert replied == {"n": 1}
    events = db.execute("SELECT kind, source FROM consent_events ORDER BY id").fetchall()
    assert events == [{"kind": "opt_out", "source": "keyword"}] * 2
    notices = db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'opted_out'").fetchone()
    assert notices == {"n": 2}
    assert not may_receive_marketing(db)
    cid = conversation_id(db)
    state = consent_of(inbox, cid)
    assert state["marketing_opt_out"] is True and state["may_receive_marketing"] is False
    assert state["marketing_source"] == "keyword" and "opted out" in state["marketing_refusal"]
    assert 'data-marketing="opted_out"' in inbox.get(f"/inbox/conversations/{cid}").text
    job = db.execute(
        "SELECT j.skip_reason FROM outbound_jobs j JOIN messages m ON m.id = j.inbound_message_id"
        " WHERE m.wa_message_id = %s",
        (sentence,),
    ).fetchone()
    assert job is not None and job["skip_reason"] != "an opt-out or opt-in word, and its confirmation setting is empty"

    deliver(client, "Start")
    settled(db)
    assert sent_texts(fake_graph)[-1] == settings.opt_in_confirmation
    deliver(client, "¡Baja!")  # a Spanish word: the Spanish confirmation
    settled(db)
    assert sent_texts(fake_graph)[-1] == settings.opt_out_confirmations["es"]
    deliver(client, "ALTA")
    settled(db)
    assert sent_texts(fake_graph)[-1] == settings.opt_in_confirmations["es"]
    assert may_receive_marketing(db)
    state = consent_of(inbox, cid)
    assert state["marketing_opt_out"] is False and state["marketing_refusal"] is None


def test_user_preferences_stop_and_resume_are_applied_once_each(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    deliver(client, "Hello")
    cid = conversation_id(db)
    stop = payloads.dumps(payloads.user_preferences("stop", timestamp=1_800_000_000))
    for _ in range(2):
        assert post_webhook(client, stop).status_code == 200
    journaled = db.execute(
        "SELECT count(*) AS n FROM webhook_events WHERE convert_from(body, 'UTF8') LIKE '%%user_preferences%%'"
        " AND processed_at IS NOT NULL"
    ).fetchone()
    assert journaled == {"n": 2}
    rows = db.execute("SELECT kind, source, conversation_id FROM consent_events").fetchall()
    assert rows == [{"kind": "opt_out", "source": "user_preferences", "conversation_id": cid}]
    assert db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'opted_out'").fetchone() == {"n": 1}
    state = consent_of(inbox, cid)
    assert state["marketing_opt_out"] is True and "stopped marketing messages" in state["marketing_refusal"]
    assert not may_receive_marketing(db)

    resume = payloads.dumps(payloads.user_preferences("resume", timestamp=1_800_000_060))
    assert post_webhook(client, resume).status_code == 200
    assert may_receive_marketing(db)
    assert consent_of(inbox, cid)["marketing_opt_out"] is False


def test_block_and_unblock_reach_the_fake_api_and_a_refused_block_shows_its_error(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    deliver(client, "Hello")
    deliver(client, "Hi", wa_id="16505550000")
    cid, stranger = conversation_id(db), conversation_id(db, "16505550000")
    fake_graph.heard(CONTACT)  # wrote within 24 hours (the fake's rule); the other one did not
    assert inbox.post(f"/api/inbox/conversations/{cid}/block", csrf=None).status_code == 403
    assert inbox.post(f"/api/inbox/conversations/{cid}/block").status_code == 202
    again = inbox.post(f"/api/inbox/conversations/{cid}/block")  # the first still waits for the worker
    assert again.status_code == 409 and again.json()["code"] == "BLOCK_PENDING"
    # a request whose job was lost does not stand in the way for ever: after 10 minutes it fails
    db.execute("UPDATE block_requests SET created_at = now() - interval '11 minutes' WHERE conversation_id = %s", [cid])
    assert inbox.post(f"/api/inbox/conversations/{cid}/block").status_code == 202
    lost = db.execute(
        "SELECT status, error FROM block_requests WHERE conversation_id = %s ORDER BY id", [cid]
    ).fetchall()
    assert [r["status"] for r in lost] == ["failed", "pending"] and "10 minutes" in lost[0]["error"]["message"]

    start_worker()
    wait_for(db, "SELECT 1 FROM block_requests WHERE conversation_id = %s AND status = 'done'", [cid])
    assert fake_graph.blocked[payloads.PHONE_NUMBER_ID] == {CONTACT}
    assert fake_graph.block_calls[0] == ("POST", payloads.PHONE_NUMBER_ID, [CONTACT])
    state = consent_of(inbox, cid)
    assert 'data-blocked="yes"' in inbox.get(f"/inbox/conversations/{cid}").text
    assert state["blocked"] is True and state["may_receive_marketing"] is False
    assert state["block_request"]["status"] == "done" and "blocked" in state["marketing_refusal"]

    assert inbox.post(f"/api/inbox/conversations/{cid}/unblock").status_code == 202
    wait_for(
        db, "SELECT 1 FROM block_requests WHERE conversation_id = %s AND action = 'unblock' AND status = 'done'", [cid]
    )
    assert fake_graph.blocked[payloads.PHONE_NUMBER_ID] == set()
    assert consent_of(inbox, cid)["blocked"] is False and may_receive_marketing(db)

    assert inbox.post(f"/api/inbox/conversations/{stranger}/block").status_code == 202
    wait_for(db, "SELECT 1 FROM block_requests WHERE conversation_id = %s AND status = 'failed'", [stranger])
    refused = consent_of(inbox, stranger)
    assert refused["blocked"] is False
    assert refused["block_request"]["error"]["code"] == 131047
    assert "User has not messaged in the last 24 hours" in refused["block_request"]["error_text"]
    assert "16505550000" not in fake_graph.blocked[payloads.PHONE_NUMBER_ID]
    page = inbox.get(f"/inbox/conversations/{stranger}").text
    assert 'data-status="failed"' in page and "User has not messaged in the last 24 hours" in page
    notice = db.execute("SELECT body FROM notifications WHERE kind = 'block_failed'").fetchone()
    assert notice is not None and "refused to block" in notice["body"]
