"""Reply buttons and lists: the rules file and the `openai` provider answer with them (checked against
Meta's limits), a tap comes back with its id and is matched by it, the inbox shows the tapped choice
and the choices offered, and a retried send carries the very same object.

Real PostgreSQL, the web server, worker subprocesses, the fake Graph API, and a small fake
OpenAI-compatible server on 127.0.0.1 that answers with tool calls."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import ServerThread, post_webhook, run_waypost, wait_for
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.settings import ConfigurationError, Settings
from worker.orchestrator import Answer, OrchestratorError, ReplyRequest, Turn
from worker.orchestrator.rules import RulesOrchestrator
from worker.orchestrator.tools import tool_answer

CONTACT = "16505551234"


def ask(text: str, tap_id: str | None = None) -> ReplyRequest:
    return ReplyRequest(conversation_id=1, contact_name="Ana", history=(Turn("contact", text),), tap_id=tap_id)


def button_tap(context_id: str | None, button_id: str, title: str) -> dict[str, Any]:
    """An inbound tap on a reply button, as Meta sends it (docs/whatsapp.md, "Taps")."""
    message = payloads.text_message("x", wa_id=CONTACT)
    del message["text"]
    message.update(
        type="interactive", interactive={"type": "button_reply", "button_reply": {"id": button_id, "title": title}}
    )
    if context_id:
        message["context"] = {"from": payloads.DISPLAY_PHONE_NUMBER, "id": context_id}
    return message


def list_tap(context_id: str, row_id: str, title: str, description: str | None = None) -> dict[str, Any]:
    message = button_tap(context_id, row_id, title)
    row = {"id": row_id, "title": title, **({"description": description} if description else {})}
    message["interactive"] = {"type": "list_reply", "list_reply": row}
    return message


def quick_reply(payload: str, text: str) -> dict[str, Any]:
    """A tap on a template's quick-reply button: type `button`, {payload, text}."""
    message = payloads.text_message("x", wa_id=CONTACT)
    del message["text"]
    return {**message, "type": "button", "button": {"payload": payload, "text": text}}


def deliver(client: httpx.Client, message: dict[str, Any]) -> str:
    response = post_webhook(client, payloads.dumps(payloads.inbound(message)))
    assert response.status_code == 200, response.text
    return str(message["id"])


def sent_for(db: psycopg.Connection, wamid: str) -> dict:
    """The reply to inbound `wamid`, once the job that answers it is done."""
    wait_for(
        db,
        "SELECT 1 FROM outbound_jobs j JOIN messages m ON m.id = j.inbound_message_id"
        " WHERE m.wa_message_id = %s AND j.status IN ('done', 'failed', 'skipped')",
        [wamid],
    )
    return db.execute("SELECT * FROM messages WHERE idempotency_key = %s", [f"reply:{wamid}"]).fetchone()


def graph_body(fake_graph: FakeGraph, wamid: str) -> dict[str, Any]:
    return next(r.body for r in fake_graph.accepted() if r.body["context"]["message_id"] == wamid)


# --- the rules file -------------------------------------------------------------------------------


async def test_default_rules_offer_buttons_then_a_list_and_match_taps_by_id() -> None:
    rules = RulesOrchestrator.from_file(None)
    offer = await rules.reply(ask("Can I book an appointment?"))
    assert offer is not None and offer.kind == "interactive" and offer.payload is not None
    assert offer.payload["type"] == "button"
    assert [b["reply"]["id"] for b in offer.payload["action"]["buttons"]] == [
        "slot_fri_14",
        "slot_sat_10",
        "slot_other",
    ]
    assert (
        offer.text == "Happy to book you in, Ana. Which time suits you? [Friday 14:00 | Saturday 10:00 | Another time]"
    )

    more = await rules.reply(ask("Another time", tap_id="slot_other"))
    assert more is not None and more.payload is not None and more.payload["type"] == "list"
    assert len(more.payload["action"]["sections"][0]["rows"]) == 3
    booked = await rules.reply(ask("Monday 9:00", tap_id="slot_mon_09"))
    assert booked == Answer("Booked: Monday 9:00. See you then! Reply 'human' if you need to change it.")
    # the tap's id is matched before any text rule: a title saying "open" is still a booking
    assert (await rules.reply(ask("open Friday", tap_id="slot_fri_14"))) == Answer(
        "Booked: open Friday. See you then! Reply 'human' if you need to change it."
    )
    # an unknown id falls back to the title, matched as text (and the existing rules answer text as before)
    hours = await rules.reply(ask("opening hours", tap_id="old_button"))
    assert hours is not None and "Monday to Friday" in hours.text


BUTTON = "{{ id = 'b{0}', title = 'Choice {0}' }}"


@pytest.mark.parametrize(
    "extra, error",
    [
        (
            f"buttons = [{', '.join(BUTTON.format(i) for i in range(4))}]",
            "book: at most 3 buttons (Meta's limit), not 4",
        ),
        (
            "list = { button = 'Pick', rows = ["
            + ", ".join(f"{{ id = 'r{i}', title = 'Row {i}' }}" for i in range(11))
            + "] }",
            "book: a list has at most 10 rows (Meta's limit), not 11",
        ),
        ("buttons = [{ id = 'a', title = 'A title of 21 chars!!' }]", "at most 20 characters"),
        ("buttons = [{ id = 'a', title = 'A' }, { id = 'a', title = 'B' }]", "distinct ids"),
        ("buttons = [{ id = 'a', title = 'A' }]\nlist = { button = 'x', rows = [] }", "'buttons' or 'list', not both"),
        ("list = { rows = [{ id = 'a', title = 'A' }] }", "book: 'list' needs 'button'"),
        (
            "list = { button = 'x', rows = [{ id = 'a', title = 'A', descripton = 'typo' }] }",
            "book: 'list.rows' takes description, id, title, not descripton",
        ),
    ],
)
def test_a_rule_meta_would_refuse_is_a_clear_configuration_error(tmp_path: Path, extra: str, error: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f"[[rules]]\nname = 'book'\nkeywords = ['book']\nanswer = 'When?'\n{extra}\n")
    with pytest.raises(ConfigurationError, match=re.escape(error)) as caught:
        RulesOrchestrator.from_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "what, limit",
    [
        ("buttons", "at most 3 buttons (Meta's limit), not 4"),
        ("rows", "a list has at most 10 rows (Meta's limit), not 11"),
    ],
)
def test_the_worker_refuses_to_start_with_too_many_buttons_or_rows(
    settings: Settings, tmp_path: Path, what: str, limit: str
) -> None:
    path = tmp_path / "rules.toml"
    if what == "buttons":
        choices = ", ".join(BUTTON.format(i) for i in range(4))
        path.write_text(f"[[rules]]\nname = 'pick'\nkeywords = ['x']\nanswer = 'Pick'\nbuttons = [{choices}]\n")
    else:
        rows = ", ".join(f"{{ id = 'r{i}', title = 'Row {i}' }}" for i in range(11))
        path.write_text(
            f"[[rules]]\nname = 'pick'\ntaps = ['x']\nanswer = 'Pick'\nlist = {{ button = 'Open', rows = [{rows}] }}\n"
        )
    result = run_waypost(settings, "worker", WAYPOST_RULES_FILE=str(path))
    assert result.returncode != 0
    assert f"pick: {limit}" in result.stderr, result.stderr[-2000:]


# --- the openai provider's tool calls -------------------------------------------------------------


def call(name: str, arguments: Any) -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": raw}}


def test_a_valid_tool_call_becomes_an_interactive_answer() -> None:
    buttons = [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]
    answer = tool_answer(call("reply_with_buttons", {"text": "Is Friday 2 pm good?", "buttons": buttons}), None)
    assert answer is not None and answer.kind == "interactive" and answer.text == "Is Friday 2 pm good? [Yes | No]"
    assert answer.payload == {
        "type": "button",
        "body": {"text": "Is Friday 2 pm good?"},
        "action": {"buttons": [{"type": "reply", "reply": b} for b in buttons]},
    }
    rows = [{"id": "s", "title": "Small", "description": ""}, {"id": "l", "title": "Large", "description": "2 kg"}]
    listed = tool_answer(call("reply_with_list", {"text": "Which size?", "button": "Sizes", "rows": rows}), None)
    assert listed is not None and listed.payload is not None
    assert listed.payload["action"] == {
        "button": "Sizes",
        "sections": [{"rows": [{"id": "s", "title": "Small"}, {"id": "l", "title": "Large", "description": "2 kg"}]}],
    }


@pytest.mark.parametrize(
    "arguments",
    [
        {"text": "Which day?", "buttons": [{"id": f"d{i}", "title": f"Day {i}"} for i in range(4)]},  # 4 buttons
        {
            "text": "Which day?",
            "buttons": [{"id": "d0", "title": "Day 0"}, {"id": "d1", "title": "D" * 30}],
        },  # 30 chars
        {"text": "Which day?", "buttons": "Day 0, Day 1"},  # not a list of objects
    ],
)
def test_a_tool_call_breaking_metas_limits_is_sent_as_plain_text(arguments: dict[str, Any], caplog) -> None:
    answer = tool_answer(call("reply_with_buttons", arguments), None)
    assert answer is not None and answer.kind == "text" and answer.payload is None
    assert answer.text.startswith("Which day?")
    if isinstance(arguments["buttons"], list):
        assert answer.text.splitlines()[1:] == ["", *[f"- {b['title']}" for b in arguments["buttons"]]]
    assert "breaks Meta's limits" in caplog.text


def test_malformed_tool_arguments_fall_back_to_the_text_or_fail_the_attempt() -> None:
    assert tool_answer(call("reply_with_buttons", '{"text": "Hi", "buttons": ['), "Hello!") == Answer("Hello!")
    with pytest.raises(OrchestratorError, match="malformed arguments"):
        tool_answer(call("reply_with_buttons", '{"text": "Hi", "buttons": ['), None)
    with pytest.raises(OrchestratorError, match="not a JSON object"):
        tool_answer(call("reply_with_list", "[1, 2]"), "")
    # a tool nobody offered, or a NUL from the model: never sent as it is
    assert tool_answer(call("book_table", {"text": "Done"}), None) == Answer("Done")
    cleaned = tool_answer(
        call("reply_with_buttons", {"text": "A\u0000B", "buttons": [{"id": "i", "title": "OK"}]}), None
    )
    assert cleaned is not None and cleaned.payload is not None and cleaned.payload["body"]["text"] == "A\ufffdB"


class FakeToolCompletions:
    """An OpenAI-compatible /v1/chat/completions server that answers each request with the next
    scripted tool call (name, arguments), or with its text when none is left."""

    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        self.requests.append(json.loads(await request.body()))
        message: dict[str, Any] = {"role": "assistant", "content": "Noted, thanks!"}
        if self.calls:
            name, arguments = self.calls.pop(0)
            message = {"role": "assistant", "content": None, "tool_calls": [call(name, arguments)]}
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": "tool_calls" if message["content"] is None else "stop",
        }
        return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]})


def openai_env(url: str, **extra: str) -> dict[str, str]:
    return {"WAYPOST_ORCHESTRATOR": "openai", "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_MODEL": "m", **extra}


def test_the_model_answers_with_buttons_and_sees_the_tap(client, db, fake_graph: FakeGraph, start_worker) -> None:
    buttons = [{"id": "fri", "title": "Friday 14:00"}, {"id": "sat", "title": "Saturday 10:00"}]
    fake = FakeToolCompletions([("reply_with_buttons", {"text": "Which day suits you?", "buttons": buttons})])
    with ServerThread(fake.app) as server:
        start_worker(**openai_env(server.url, OPENAI_INTERACTIVE="true"))
        question = deliver(client, payloads.text_message("I need a haircut", wa_id=CONTACT))
        offered = sent_for(db, question)
        tap = deliver(client, button_tap(offered["wa_message_id"], "sat", "Saturday 10:00"))
        answered = sent_for(db, tap)
    assert fake.requests[0]["tools"][0]["function"]["name"] == "reply_with_buttons"
    sent = graph_body(fake_graph, question)
    assert sent["type"] == "interactive" and sent["interactive"] == {
        "type": "button",
        "body": {"text": "Which day suits you?"},
        "action": {"buttons": [{"type": "reply", "reply": b} for b in buttons]},
    }
    assert (offered["type"], offered["payload"], offered["status"]) == ("interactive", sent["interactive"], "sent")
    # the tap reaches the model as the customer saying the title, with the id it gave the button
    last = fake.requests[1]["messages"][-2:]
    assert last[0] == {"role": "assistant", "content": "Which day suits you? [Friday 14:00 | Saturday 10:00]"}
    assert last[1] == {  # with the question it answers (context.id), as any reply in context
        "role": "user",
        "content": '(replying to your message: "Which day suits you? [Friday 14:00 | Saturday 10:00]") '
        "Saturday 10:00 [tapped the choice with id 'sat']",
    }
    assert answered["body"] == "Noted, thanks!"


def test_a_model_answer_breaking_metas_limits_is_sent_as_text(client, db, fake_graph: FakeGraph, start_worker) -> None:
    buttons = [
        {"id": f"d{i}", "title": t} for i, t in enumerate(["Mon", "Tue", "Wed", "A title thirty characters long"])
    ]
    fake = FakeToolCompletions([("reply_with_buttons", {"text": "Which day?", "buttons": buttons})])
    with ServerThread(fake.app) as server:
        worker = start_worker(**openai_env(server.url, OPENAI_INTERACTIVE="true"))
        question = deliver(client, payloads.text_message("When can I come?", wa_id=CONTACT))
        reply = sent_for(db, question)
    expected = "Which day?\n\n- Mon\n- Tue\n- Wed\n- A title thirty characters long"
    assert graph_body(fake_graph, question)["text"]["body"] == expected
    assert (reply["type"], reply["body"], reply["status"]) == ("text", expected, "sent")
    assert "breaks Meta's limits (interactive message: buttons: List should have at most 3 items" in worker.output()


def test_without_openai_interactive_the_model_is_offered_no_tools(client, db, fake_graph, start_worker) -> None:
    fake = FakeToolCompletions([])
    with ServerThread(fake.app) as server:
        start_worker(**openai_env(server.url))
        sent_for(db, deliver(client, payloads.text_message("hi", wa_id=CONTACT)))
    assert "tools" not in fake.requests[0]


# --- end to end with the rules file, the inbox, and a retry ---------------------------------------


def test_rules_buttons_a_tap_a_list_and_the_inbox(
    client, db, database_url, fake_graph: FakeGraph, start_worker
) -> None:
    start_worker()
    question = deliver(client, payloads.text_message("Can I book an appointment?", wa_id=CONTACT))
    offered = sent_for(db, question)
    sent = graph_body(fake_graph, question)
    assert sent["type"] == "interactive" and sent["interactive"]["type"] == "button"
    assert sent["interactive"]["action"]["buttons"][2] == {
        "type": "reply",
        "reply": {"id": "slot_other", "title": "Another time"},
    }
    assert sent["context"] == {"message_id": question}

    started = time.monotonic()
    tap = deliver(client, button_tap(offered["wa_message_id"], "slot_other", "Another time"))
    listed = sent_for(db, tap)
    elapsed = time.monotonic() - started
    print(f"\nbutton tap webhook to the list answering it sent and recorded: {elapsed * 1000:.0f} ms")
    assert elapsed < 10
    assert graph_body(fake_graph, tap)["interactive"]["action"]["button"] == "See times"
    row_tap = deliver(client, list_tap(listed["wa_message_id"], "slot_tue_16", "Tuesday 16:00", "with Luis"))
    assert (
        sent_for(db, row_tap)["body"] == "Booked: Tuesday 16:00. See you then! Reply 'human' if you need to change it."
    )
    template_tap = deliver(client, quick_reply("slot_sat_10", "Saturday"))
    assert sent_for(db, template_tap)["body"].startswith("Booked: Saturday.")

    create_operator(database_url)
    inbox = Inbox(client)
    messages = inbox.get(f"/api/inbox/conversations/{conversation_id(db)}").json()["messages"]
    by_wamid = {m["wa_message_id"]: m for m in messages}
    assert by_wamid[tap]["tap"] == {
        "kind": "button_reply",
        "id": "slot_other",
        "title": "Another time",
        "description": None,
    }
    assert by_wamid[tap]["quoted"]["id"] == offered["id"] and by_wamid[tap]["quoted"]["author"] == "ai"
    assert by_wamid[row_tap]["tap"] == {
        "kind": "list_reply",
        "id": "slot_tue_16",
        "title": "Tuesday 16:00",
        "description": "with Luis",
    }
    assert by_wamid[template_tap]["tap"] == {"kind": "quick_reply", "id": "slot_sat_10", "title": "Saturday"}
    shown = by_wamid[offered["wa_message_id"]]["interactive"]
    assert (
        shown["type"] == "button"
        and shown["text"] == "Happy to book you in, Contact 16505551234. Which time suits you?"
    )
    assert [c["title"] for c in shown["choices"]] == ["Friday 14:00", "Saturday 10:00", "Another time"]
    assert by_wamid[listed["wa_message_id"]]["interactive"]["button"] == "See times"
    assert by_wamid[question]["tap"] is None and by_wamid[question]["interactive"] is None

    page = inbox.get(f"/inbox/conversations/{conversation_id(db)}").text
    assert 'data-tap-id="slot_other"' in page and '<span class="chip chosen">Another time</span>' in page
    assert '<li class="chip" data-choice-id="slot_fri_14" title="">Friday 14:00</li>' in page
    assert '<li class="list-button">☰ See times</li>' in page


def test_a_retried_interactive_send_carries_the_same_object(client, db, fake_graph: FakeGraph, start_worker) -> None:
    fake_graph.script.append(Behaviour(503))
    start_worker()
    started = time.monotonic()
    question = deliver(client, payloads.text_message("I want to book", wa_id=CONTACT))
    reply = sent_for(db, question)
    first, second = fake_graph.requests
    assert (first.accepted, second.accepted) == (False, True)
    assert first.body["interactive"] == second.body["interactive"] and second.body["type"] == "interactive"
    assert first.body["biz_opaque_callback_data"] == second.body["biz_opaque_callback_data"] == f"reply:{question}"
    rows = db.execute("SELECT * FROM messages WHERE direction = 'outbound'").fetchall()
    assert [r["id"] for r in rows] == [reply["id"]]
    assert (reply["status"], reply["send_attempts"], reply["payload"]) == ("sent", 2, second.body["interactive"])
    assert time.monotonic() - started < 20
