"""Handing over to a person (README "Handing over"): a customer who asks for one gets the handover
message once, the AI pauses for that conversation and the operators get the reason with the last
messages. Real PostgreSQL, a real worker process and the fake Graph API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from tests.conftest import NO_GRAPH_API, ServerThread, post_webhook, run_waypost, settled, wait_for, wait_until
from tests.test_knowledge import KnowledgeOpenAI, post, reply_to
from tests.test_reply import deliver
from waypost.devtools import payloads
from waypost.devtools.fake_answers import Behaviour
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings
from waypost.sql import query
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


# --- the model's summary, more triggers, business hours ----------------------------------------------


@pytest.fixture
def model() -> Iterator[tuple[KnowledgeOpenAI, str]]:
    """The knowledge tests' fake model: it answers a handover's summary request recognisably."""
    fake = KnowledgeOpenAI()
    with ServerThread(fake.app) as server:
        yield fake, f"{server.url}/v1"


def handover_notice(db: psycopg.Connection, wa_id: str) -> str:
    row = wait_for(
        db,
        "SELECT n.body FROM notifications n JOIN conversations c ON c.id = n.conversation_id"
        " WHERE n.kind = 'handover' AND c.wa_id = %s",
        [wa_id],
    )
    return str(row["body"])


def sends_to(fake_graph: FakeGraph, wa_id: str) -> list[str | None]:
    """The texts sent to a contact (read receipts and typing calls left out)."""
    return [r.body.get("text", {}).get("body") for r in fake_graph.requests if r.body.get("to") == wa_id]


def test_with_the_model_the_notification_holds_its_summary_and_more_triggers_hand_over(
    client: httpx.Client,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    model: tuple[KnowledgeOpenAI, str],
) -> None:
    fake, url = model
    start_worker(
        WAYPOST_ORCHESTRATOR="openai",
        OPENAI_BASE_URL=url,
        OPENAI_MODEL="gpt-test",
        WAYPOST_HANDOVER_AFTER_AI_REPLIES="2",
    )
    # A failure after the claim is no handover: the answer Meta refused fails, nothing else is sent
    fake_graph.script.append(Behaviour(status=400, code=131026))
    deliver(client, "Hello, is the shop open?", wa_id="100")
    wait_for(db, "SELECT 1 FROM messages WHERE direction = 'outbound' AND status = 'failed'")
    settled(db)
    assert sends_to(fake_graph, "100") == ["Grounded answer to: Hello, is the shop open?"]
    assert db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'handover'").fetchone()["n"] == 0

    # asking for a human: the model is not asked to answer, only to summarise
    asked = post(client, "I want to talk to a human")
    told = wait_until(lambda: reply_to(db, asked), what="the handover message")
    assert told["body"] == settings.handover_message
    notice = handover_notice(db, "16505551234")
    assert notice == (
        "Handed over to a person: the customer asked for a person.\n"
        "Summary: Model summary: 1 lines, the last: Customer: I want to talk to a human"
    )
    assert len(fake.chats) == 1 and len(fake.summaries) == 1  # the first contact's answer, this summary

    # the model has no reply: a handover, not silence
    silent = deliver(client, "please say nothing", wa_id="200")["id"]
    wait_until(lambda: reply_to(db, silent), what="the handover message")
    assert handover_notice(db, "200").startswith("Handed over to a person: the AI had no reply.\nSummary: Model")

    # two AI replies in a row, then the third message goes to a person before the model is asked
    for text in ("Where is my order?", "And the invoice?"):
        wamid = deliver(client, text, wa_id="300")["id"]
        wait_until(lambda wamid=wamid: reply_to(db, wamid), what="the AI's answer")
    asked_models = len(fake.chats)
    third = deliver(client, "Still there?", wa_id="300")["id"]
    assert wait_until(lambda: reply_to(db, third), what="the handover")["body"] == settings.handover_message
    assert handover_notice(db, "300").startswith(
        "Handed over to a person: the AI has answered 2 times in a row (WAYPOST_HANDOVER_AFTER_AI_REPLIES=2)."
    )
    assert len(fake.chats) == asked_models
    assert sends_to(fake_graph, "300")[-1] == settings.handover_message
    paused = db.execute("SELECT wa_id FROM conversations WHERE NOT ai_enabled ORDER BY wa_id").fetchall()
    assert [r["wa_id"] for r in paused] == ["16505551234", "200", "300"]


def test_an_ai_that_fails_for_good_hands_over_once_with_the_last_messages(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    # the model's endpoint is a closed port: the answer and the summary both fail at once
    worker = start_worker(
        WAYPOST_ORCHESTRATOR="openai",
        OPENAI_BASE_URL=NO_GRAPH_API + "/v1",
        OPENAI_MODEL="gpt-test",
        OPENAI_MAX_RETRIES="0",
        WAYPOST_REPLY_MAX_ATTEMPTS="1",
    )
    message = deliver(client, "Where is my parcel?")
    assert post_webhook(client, payloads.dumps(payloads.inbound(message))).status_code == 200  # again
    told = wait_until(lambda: reply_to(db, message["id"]), what="the handover message")
    assert told["body"] == settings.handover_message
    notice = handover_notice(db, "16505551234")
    assert notice.startswith("Handed over to a person: the AI failed: gave up after 1 attempt(s): orchestrator failed")
    assert notice.endswith("\nCustomer: Where is my parcel?")  # the summary's fallback
    assert "handover summary: the model's failed" in worker.output()
    settled(db)
    assert sends_to(fake_graph, "16505551234") == [settings.handover_message]
    assert db.execute("SELECT status FROM outbound_jobs").fetchone()["status"] == "done"


def test_outside_business_hours_the_customer_is_promised_the_next_opening(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    """Open only the day after tomorrow in a zone far from UTC: the promise names that day."""
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14: its date is often not UTC's

    def promised() -> str:
        day = dt.datetime.now(zone).date() + dt.timedelta(days=2)
        return f"Thanks! A person from our team will answer you here on {day.strftime('%A')} from 9:00."

    day = dt.datetime.now(zone).date() + dt.timedelta(days=2)
    before = promised()
    start_worker(WAYPOST_BUSINESS_HOURS=f"{day.strftime('%a').lower()} 09:00-18:00", WAYPOST_TIMEZONE=zone.key)
    asked = deliver(client, "Can I talk to a person?")["id"]
    told = wait_until(lambda: reply_to(db, asked), what="the handover message")
    assert told["body"] in {before, promised()}  # the same, unless midnight passed in between
    opens = told["body"].removeprefix("Thanks! A person from our team will answer you here ").removesuffix(".")
    assert f"\nOutside business hours: a person was promised {opens}.\n" in handover_notice(db, "16505551234")


def test_the_worker_refuses_a_time_zone_that_is_not_one(settings: Settings) -> None:
    done = run_waypost(settings, "worker", WAYPOST_TIMEZONE="Europe/Atlantis")
    assert done.returncode == 2
    assert "configuration error: WAYPOST_TIMEZONE: 'Europe/Atlantis' is not an IANA time zone name" in done.stderr


def test_the_ai_replies_in_a_row_start_after_an_operator_message_and_after_a_handover(db: psycopg.Connection) -> None:
    """The count behind WAYPOST_HANDOVER_AFTER_AI_REPLIES, on rows written directly."""
    conversation = db.execute(
        "INSERT INTO conversations (phone_number_id, wa_id) VALUES ('p', '500') RETURNING id"
    ).fetchone()["id"]

    def inbound() -> int:
        row = db.execute(
            "INSERT INTO messages (conversation_id, direction, author, type, body, status, wa_message_id)"
            " VALUES (%s, 'inbound', 'contact', 'text', 'hi', 'received', %s) RETURNING id",
            [conversation, payloads.new_wamid()],
        ).fetchone()
        return int(row["id"])

    def outbound(author: str, reply_to: int | None, status: str = "sent") -> None:
        db.execute(
            "INSERT INTO messages (conversation_id, direction, author, type, body, status, idempotency_key,"
            " reply_to_message_id) VALUES (%s, 'outbound', %s, 'text', 'answer', %s, %s, %s)",
            [conversation, author, status, payloads.new_wamid(), reply_to],
        )

    def in_a_row() -> int:
        return int(
            db.execute(query("handover_ai_replies_in_a_row"), {"conversation_id": conversation}).fetchone()["count"]
        )

    for _ in range(3):
        outbound("ai", inbound())
    outbound("ai", inbound(), status="failed")  # never reached the customer: not a reply
    assert in_a_row() == 3
    outbound("operator", None)  # a person wrote: the count starts again
    assert in_a_row() == 0
    outbound("ai", inbound())
    asked = inbound()
    db.execute(
        "INSERT INTO notifications (conversation_id, message_id, kind, body) VALUES (%s, %s, 'handover', 'x')",
        [conversation, asked],
    )
    outbound("ai", asked)  # the handover message itself does not count
    assert in_a_row() == 0
    outbound("ai", inbound())
    assert in_a_row() == 1


def test_a_handover_whose_run_died_before_the_claim_still_sends_its_message(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    asked = deliver(client, "I want to talk to a human")  # no worker yet: its reply job waits
    inbound = db.execute("SELECT id, conversation_id FROM messages WHERE wa_message_id = %s", [asked["id"]]).fetchone()
    # what a run commits when it hands over, before its message is claimed: then it was killed
    pause = {"conversation_id": inbound["conversation_id"], "reason": "the customer asked for a person"}
    db.execute(query("handover_pause_ai"), pause)
    db.execute(
        "INSERT INTO notifications (conversation_id, message_id, kind, body) VALUES (%s, %s, 'handover', 'x')",
        [inbound["conversation_id"], inbound["id"]],
    )
    start_worker()  # the retried run finds the AI paused, by that handover: the message is still owed
    wait_for(db, "SELECT 1 FROM outbound_jobs WHERE status = 'done'")
    settled(db)
    assert [r.body["text"]["body"] for r in fake_graph.accepted()] == [settings.handover_message]
    kinds = [r["kind"] for r in db.execute("SELECT kind FROM notifications ORDER BY id").fetchall()]
    assert kinds == ["handover"]  # told once, by the run that died; nothing "left for an operator"
