"""Who owns a handed-over conversation and how it goes back to the AI (README "Handing over"): the
list's owner (AI, waiting for a person with the reason, a named operator), an operator's answer or
take-over ending the wait, the one-click hand-back, the sweep's hand-back after
WAYPOST_HANDBACK_AFTER_SECONDS (once, however many sweeps run), and the AI reading what the operator
said. Real PostgreSQL, the web app, and for the last one a worker and a fake OpenAI-compatible model."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import CRON_SECRET, ServerThread, post_webhook, settled, wait_until
from tests.inbox_client import Inbox, conversation_id, create_operator
from tests.test_inbox_api import inbound
from tests.test_knowledge import KnowledgeOpenAI, post, reply_to
from waypost.devtools import payloads
from waypost.settings import Settings
from waypost.sql import query
from worker.handover import ASKED

REFUND = "the customer wants a refund"
CRON = "/api/cron/run-outbound-jobs"


@pytest.fixture
def inbox(client: httpx.Client, database_url: str) -> Inbox:
    create_operator(database_url)
    return Inbox(client)


@pytest.fixture
def model() -> Iterator[tuple[KnowledgeOpenAI, str]]:
    """A fake OpenAI-compatible model recording its requests."""
    fake = KnowledgeOpenAI()
    with ServerThread(fake.app) as server:
        yield fake, f"{server.url}/v1"


def hand_over(db: psycopg.Connection, conversation: int, reason: str) -> None:
    """What worker/handover.py runs when the AI hands a conversation over."""
    db.execute(query("handover_pause_ai"), {"conversation_id": conversation, "reason": reason})


def owners(inbox: Inbox, **params: str) -> dict[int, dict[str, Any]]:
    listed = inbox.get("/api/inbox/conversations", **params).json()["conversations"]
    return {c["id"]: c["owner"] for c in listed}


def sweep(client: httpx.Client) -> dict[str, Any]:
    answer = client.post(CRON, headers={"Authorization": f"Bearer {CRON_SECRET}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_list_shows_who_owns_each_conversation_and_an_operator_ends_the_wait(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection
) -> None:
    inbound(client, "hello from Sheena")
    inbound(client, "I want my money back", wa_id="4915112345678", name="Ana Lima")
    inbound(client, "is anyone there?", wa_id="447700900123", name="Ben Ode")
    sheena, ana, ben = (conversation_id(db, w) for w in ("16505551234", "4915112345678", "447700900123"))
    hand_over(db, ana, REFUND)
    hand_over(db, ben, "the customer asked for a person")

    listed = owners(inbox)
    assert listed[sheena] == {
        "kind": "ai",
        "label": "AI",
        "operator": None,
        "handed_over_at": None,
        "handover_reason": None,
    }
    assert listed[ana]["kind"] == "waiting" and listed[ana]["label"] == "Waiting for a person"
    assert listed[ana]["handover_reason"] == REFUND and listed[ana]["handed_over_at"] is not None
    assert set(owners(inbox, filter="waiting")) == {ana, ben}
    page = inbox.client.get(f"/inbox/conversations/{ana}").text
    assert 'id="handover-banner"' in page and REFUND in page and 'id="hand-back"' in page
    assert 'data-owner="waiting"' in inbox.client.get("/inbox").text

    # an operator's message takes Ana's conversation (a reaction would not); a take-over takes Ben's
    sent = inbox.post(f"/api/inbox/conversations/{ana}/messages", {"body": "Sam here: I'll sort out your refund."})
    assert sent.status_code == 202, sent.text
    assert inbox.post(f"/api/inbox/conversations/{ben}/ai", {"enabled": False}).status_code == 200
    listed = owners(inbox)
    assert listed[ana]["kind"] == "operator" and listed[ana]["label"] == "op@example.com"
    assert listed[ana]["handover_reason"] == REFUND, "still handed over: the reason stays known"
    assert listed[ben]["kind"] == "operator" and owners(inbox, filter="waiting") == {}
    assert 'id="handover-banner"' not in inbox.client.get(f"/inbox/conversations/{ana}").text

    # one click hands it back: the AI owns it and the handover is over
    assert inbox.post(f"/api/inbox/conversations/{ana}/ai", {"enabled": True}).status_code == 200
    assert owners(inbox)[ana] == listed[sheena]
    row = db.execute("SELECT * FROM conversations WHERE id = %s", (ana,)).fetchone()
    assert row is not None and row["ai_enabled"] is True
    assert (row["handed_over_at"], row["handover_reason"], row["owner_operator_id"]) == (None, None, None)


def test_the_sweep_hands_back_once_after_the_time_without_an_operator_message(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    for wa_id, name in (("16505551234", "Quiet"), ("4915112345678", "Answered"), ("447700900123", "Paused")):
        inbound(client, "hello", wa_id=wa_id, name=name)
    quiet, answered, paused = (conversation_id(db, w) for w in ("16505551234", "4915112345678", "447700900123"))
    hand_over(db, quiet, REFUND)
    hand_over(db, answered, REFUND)
    assert inbox.post(f"/api/inbox/conversations/{answered}/messages", {"body": "On it."}).status_code == 202
    assert inbox.post(f"/api/inbox/conversations/{paused}/ai", {"enabled": False}).status_code == 200
    assert sweep(client)["handed_back"] == 0, "nothing is due yet"
    # a day and a minute later: the operator of `answered` wrote a minute ago, `paused` was never handed over
    after = settings.handback_after_seconds
    db.execute(
        "UPDATE conversations SET handed_over_at = now() - make_interval(secs => %s + 60),"
        " owned_at = CASE WHEN owned_at IS NOT NULL THEN now() - interval '1 minute' END"
        " WHERE handed_over_at IS NOT NULL",
        (after,),
    )
    aged = "UPDATE conversations SET owned_at = now() - make_interval(secs => %s + 60) WHERE id = %s"
    db.execute(aged, (after, paused))

    # two sweeps at the same moment: one hands it back, with one notification
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: sweep(client), range(2)))
    assert sorted(r["handed_back"] for r in reports) == [0, 1]
    assert sweep(client)["handed_back"] == 0
    [notice] = db.execute("SELECT conversation_id, body FROM notifications WHERE kind = 'handed_back'").fetchall()
    assert notice["conversation_id"] == quiet
    said = f"Handed back to the AI: no operator message for 1440 minutes after the handover ({REFUND})"
    assert notice["body"] == said
    listed = owners(inbox)
    assert listed[quiet]["kind"] == "ai"
    assert listed[answered]["kind"] == "operator" and listed[paused]["kind"] == "operator"


def test_two_sweeps_in_flight_hand_back_once(database_url: str, db: psycopg.Connection, client: httpx.Client) -> None:
    """The statement itself: a sweep whose transaction is still open holds the row; the other skips it,
    and finds nothing due once the first committed."""
    inbound(client, "hello")
    conversation = conversation_id(db)
    hand_over(db, conversation, REFUND)
    db.execute("UPDATE conversations SET handed_over_at = now() - interval '2 days'")
    statement = query("sweep_hand_back")
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        assert first.execute(statement, {"after": 3600}).fetchone() == (1,)  # not committed yet
        assert second.execute(statement, {"after": 3600}).fetchone() == (0,)
        first.commit()
        second.rollback()
        assert second.execute(statement, {"after": 3600}).fetchone() == (0,)
    count = db.execute("SELECT count(*) AS n FROM notifications WHERE kind = 'handed_back'").fetchone()
    assert count is not None and count["n"] == 1


def test_after_the_hand_back_the_ai_reads_what_the_operator_said(
    client: httpx.Client,
    db: psycopg.Connection,
    inbox: Inbox,
    start_worker: Callable[..., Any],
    model: tuple[KnowledgeOpenAI, str],
) -> None:
    fake, url = model
    start_worker(WAYPOST_ORCHESTRATOR="openai", OPENAI_BASE_URL=url, OPENAI_MODEL="gpt-test")
    asked = post(client, "My lamp arrived broken, I want to talk to a human")
    wait_until(lambda: reply_to(db, asked), what="the handover message")
    row = db.execute("SELECT id, handover_reason, ai_enabled FROM conversations").fetchone()
    assert row is not None and row["handover_reason"] == ASKED and row["ai_enabled"] is False
    assert fake.chats == [], "handed over without asking the model"

    words = "Sam here: refund approved, 30 EUR back on your card by Friday."
    assert inbox.post(f"/api/inbox/conversations/{row['id']}/messages", {"body": words}).status_code == 202
    wait_until(lambda: db.execute("SELECT 1 FROM messages WHERE body = %s AND status = 'sent'", (words,)).fetchone())
    # nobody writes for a day: the sweep hands the conversation back
    two_days = "now() - interval '2 days'"
    db.execute(f"UPDATE conversations SET handed_over_at = {two_days}, owned_at = {two_days}")
    assert sweep(client)["handed_back"] == 1

    thanks = post(client, "Thanks! Which card exactly?")
    wait_until(lambda: reply_to(db, thanks), what="the AI's answer after the hand-back")
    said = [m for m in fake.chats[-1]["messages"] if m["role"] == "assistant"]
    assert any(words in str(m["content"]) for m in said), fake.chats[-1]["messages"]
    settled(db)


def test_a_reply_from_the_phone_app_ends_the_wait(inbox: Inbox, client: httpx.Client, db: psycopg.Connection) -> None:
    inbound(client, "hello")
    conversation = conversation_id(db)
    hand_over(db, conversation, REFUND)
    assert owners(inbox)[conversation]["kind"] == "waiting"
    reaction = payloads.echo_message("👍")
    reaction.update(type="reaction", reaction={"message_id": "wamid.x", "emoji": "👍"})
    reaction.pop("text")
    for echo in (reaction, payloads.echo_message("Ana here, from the shop's phone: I'll look into it.")):
        assert post_webhook(client, payloads.dumps(payloads.echoes(echo))).status_code == 200
        kind = owners(inbox)[conversation]["kind"]
        assert kind == ("waiting" if echo is reaction else "paused"), echo  # a reaction is no answer
    assert owners(inbox)[conversation]["label"] == "A person"
    stored = db.execute("SELECT type FROM messages WHERE source = 'phone_app' ORDER BY id").fetchall()
    assert [row["type"] for row in stored] == ["reaction", "text"]
