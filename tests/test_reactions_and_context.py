"""Reactions and replies in context, as the operator sees them: a reaction shows on the message it
reacts to (an empty emoji removes it); a reply in context shows the message it quotes."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.conftest import post_webhook
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads


def deliver(client: httpx.Client, message: dict[str, Any]) -> str:
    assert post_webhook(client, payloads.dumps(payloads.inbound(message))).status_code == 200
    return str(message["id"])


def reaction(target: str, emoji: str) -> dict[str, Any]:
    message = payloads.text_message("x")
    del message["text"]
    return {**message, "type": "reaction", "reaction": {"message_id": target, "emoji": emoji}}


def test_a_reaction_shows_on_its_message_and_an_empty_one_removes_it(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    question = deliver(client, payloads.text_message("Is Friday 2 pm good?"))
    deliver(client, reaction(question, "👍"))
    listed = inbox.get(f"/api/inbox/conversations/{conversation_id(db)}").json()["messages"]
    assert next(m for m in listed if m["wa_message_id"] == question)["reaction"] == "👍"
    page = inbox.get(f"/inbox/conversations/{conversation_id(db)}").text
    assert 'data-reaction="👍"' in page

    deliver(client, reaction(question, ""))  # WhatsApp's way to take a reaction back
    listed = inbox.get(f"/api/inbox/conversations/{conversation_id(db)}").json()["messages"]
    assert next(m for m in listed if m["wa_message_id"] == question)["reaction"] is None
    assert "data-reaction=" not in inbox.get(f"/inbox/conversations/{conversation_id(db)}").text


def test_a_reply_in_context_shows_the_message_it_quotes(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    earlier = deliver(client, payloads.text_message("My order number is 4417"))
    deliver(client, payloads.text_message("It has not arrived yet"))
    answer = {**payloads.text_message("Any news on this one?"), "context": {"from": "16505551234", "id": earlier}}
    deliver(client, answer)
    listed = inbox.get(f"/api/inbox/conversations/{conversation_id(db)}").json()["messages"]
    quoted = next(m for m in listed if m["wa_message_id"] == answer["id"])["quoted"]
    assert quoted["body"] == "My order number is 4417" and quoted["author"] == "contact"
    page = inbox.get(f"/inbox/conversations/{conversation_id(db)}").text
    assert 'class="quoted"' in page and "My order number is 4417</blockquote>" in page
    # a context naming a message Waypost never stored quotes nothing
    deliver(client, {**payloads.text_message("and this?"), "context": {"id": "wamid.unknown"}})
    listed = inbox.get(f"/api/inbox/conversations/{conversation_id(db)}").json()["messages"]
    assert listed[-1]["quoted"] is None
