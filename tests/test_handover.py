"""Handing over to a person (README "Handing over"): a customer who asks for one gets the handover
message once, the AI pauses for that conversation and the operators get the reason with the last
messages. Real PostgreSQL, a real worker process and the fake Graph API."""

from __future__ import annotations

import httpx
import psycopg

from tests.conftest import post_webhook, settled, wait_for
from tests.test_reply import deliver
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings
from worker.handover import asks_for_a_person


def test_the_phrases_match_whole_words_anywhere_in_a_text() -> None:
    phrases = Settings().handover_words
    for text in ("I want to talk to a human", "HUMAN please!", "¿Puedo hablar con una persona?", "Mitarbeiter bitte"):
        assert asks_for_a_person(phrases, "text", text), text
    for text in ("that was humane of you", "my order", "", "personal question"):
        assert not asks_for_a_person(phrases, "text", text), text
    assert not asks_for_a_person(phrases, "image", "human")  # a caption is not a request
    assert not asks_for_a_person((), "text", "human")  # no phrases: off


def test_asking_for_a_human_hands_over_once_with_the_reason_and_the_last_messages(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    start_worker()
    deliver(client, "What are your opening hours?")
    wait_for(db, "SELECT 1 FROM messages WHERE direction = 'outbound' AND status = 'sent'")
    asked_message = deliver(client, "This is not helping, I want to talk to a human")
    assert post_webhook(client, payloads.dumps(payloads.inbound(asked_message))).status_code == 200  # again
    asked = asked_message["id"]
    told = wait_for(
        db,
        "SELECT r.* FROM messages r JOIN messages m ON m.id = r.reply_to_message_id"
        " WHERE m.wa_message_id = %s AND r.status = 'sent'",
        [asked],
    )
    assert told["body"] == settings.handover_message
    assert db.execute("SELECT ai_enabled FROM conversations").fetchone()["ai_enabled"] is False
    [notice] = db.execute("SELECT body FROM notifications WHERE kind = 'handover'").fetchall()
    assert notice["body"].startswith("Handed over to a person: the customer asked for a person.")
    assert "Customer: What are your opening hours?" in notice["body"]
    assert "Customer: This is not helping, I want to talk to a human" in notice["body"]

    # the next message waits for an operator: the AI says nothing more
    deliver(client, "hello?")
    wait_for(db, "SELECT 1 FROM notifications WHERE kind = 'operator_needed'")
    settled(db)
    bodies = [r.body.get("text", {}).get("body") for r in fake_graph.accepted()]
    assert bodies.count(settings.handover_message) == 1 and len(bodies) == 2
