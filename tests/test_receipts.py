"""Read receipts and the typing indicator (worker/receipts.py): real PostgreSQL, a real worker
subprocess, the fake Graph API recording each read/typing call, and for slow answers a real
OpenAI-compatible server on 127.0.0.1 that takes its time."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import ServerThread, WebServer, post_webhook, settled, wait_until
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_answers import Behaviour
from waypost.devtools.fake_graph import FakeGraph
from waypost.devtools.fake_receipts import receipt_problem
from waypost.settings import Settings
from waypost.sql import query

CONTACT = "16505551234"


class SlowModel:
    """An OpenAI-compatible chat endpoint that answers "Slow answer to: <text>" after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        await asyncio.sleep(self.delay)
        answer = {"role": "assistant", "content": f"Slow answer to: {body['messages'][-1]['content']}"}
        return JSONResponse({"choices": [{"index": 0, "message": answer, "finish_reason": "stop"}]})


@pytest.fixture
def slow_model() -> Iterator[tuple[SlowModel, str]]:
    model = SlowModel(delay=1.8)
    with ServerThread(model.app) as server:
        yield model, f"{server.url}/v1"


def deliver(client: httpx.Client, fake_graph: FakeGraph, text: str) -> str:
    """A contact's text message, posted to the webhook (and known to the fake as one it delivered)."""
    message = payloads.text_message(text, wa_id=CONTACT)
    fake_graph.inbound(message["id"])
    answer = post_webhook(client, payloads.dumps(payloads.inbound(message)))
    assert answer.status_code == 200, answer.text
    return str(message["id"])


def reply_send(fake_graph: FakeGraph, wamid: str) -> Any:
    """The accepted send that answered `wamid`, once there is one."""
    sends = [r for r in fake_graph.accepted() if r.body.get("context") == {"message_id": wamid}]
    return sends[0] if sends else None


def row(db: psycopg.Connection, sql: str, *params: Any) -> dict[str, Any]:
    found = db.execute(sql, params).fetchone()
    assert found is not None, sql
    return found


def receipt_at(db: psycopg.Connection, wamid: str) -> Any:
    return row(db, "SELECT read_receipt_at FROM messages WHERE wa_message_id = %s", wamid)["read_receipt_at"]


def receipt_jobs_done(db: psycopg.Connection) -> bool:
    """No read_receipt job is waiting or running."""
    return not db.execute(
        "SELECT 1 FROM procrastinate_jobs WHERE task_name = 'read_receipt' AND status IN ('todo', 'doing')"
    ).fetchone()


def pause_ai(inbox: Inbox, cid: int) -> None:
    assert inbox.post(f"/api/inbox/conversations/{cid}/ai", {"enabled": False}).status_code == 200


def test_an_ai_reply_is_preceded_by_exactly_one_read_and_typing_call(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(WAYPOST_TYPING_AFTER_SECONDS="0")  # the indicator even for an immediate answer
    first = deliver(client, fake_graph, "Hi, what are your opening hours?")
    send = wait_until(lambda: reply_send(fake_graph, first), what="the reply")
    settled(db)

    [typing] = fake_graph.receipts
    assert typing.accepted and typing.phone_number_id == payloads.PHONE_NUMBER_ID
    assert typing.body == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": first,
        "typing_indicator": {"type": "text"},
    }
    assert typing.at <= send.at  # the indicator first, then the answer that dismisses it
    assert len(fake_graph.requests) == 1  # the receipt is not a send
    assert receipt_at(db, first) is not None
    # the operators' own unread state is untouched: nobody has opened the conversation
    assert row(db, "SELECT operator_read_at FROM conversations WHERE wa_id = %s", CONTACT)["operator_read_at"] is None

    job = row(db, "SELECT request_id, procrastinate_job_id FROM outbound_jobs")
    prefix = f"request_id={job['request_id']} job_id={job['procrastinate_job_id']}"
    assert any(prefix in line and "read receipt sent kind=typing" in line for line in worker.output().splitlines())

    # the next message gets its own call, for itself
    second = deliver(client, fake_graph, "And on Sunday?")
    wait_until(lambda: reply_send(fake_graph, second), what="the second reply")
    settled(db)
    assert [r.wa_message_id for r in fake_graph.typing_calls()] == [first, second]


def test_an_immediate_answer_goes_at_once_with_a_plain_read_beside_it(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    """The rules provider answers at once (under WAYPOST_TYPING_AFTER_SECONDS): no indicator, which
    Meta would drop as the reply arrives, and the reply never waits for Meta's answer to one; the
    message is marked read all the same, by a call right after the reply, and recorded."""
    worker = start_worker()
    wamid = deliver(client, fake_graph, "Hi, what are your opening hours?")
    wait_until(lambda: reply_send(fake_graph, wamid), what="the reply")
    settled(db)
    # the call comes after the reply's record, which ended its job (worker.job_end): its outcome is logged
    wait_until(lambda: "read receipt sent kind=read" in worker.output(), what="the read call's outcome")
    [read] = fake_graph.receipts
    assert read.accepted and read.body == {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
    assert fake_graph.typing_calls() == [] and len(fake_graph.requests) == 1
    # recorded with the reply, in the same statement: the same time (no statement of its own)
    reply = row(db, "SELECT sent_at FROM messages WHERE direction = 'outbound'")
    assert receipt_at(db, wamid) == reply["sent_at"]
    job = row(db, "SELECT request_id, procrastinate_job_id FROM outbound_jobs")
    prefix = f"request_id={job['request_id']} job_id={job['procrastinate_job_id']}"
    assert any(prefix in line and "read receipt sent kind=read" in line for line in worker.output().splitlines())


def test_an_immediate_answers_read_call_refused_leaves_its_message_unread(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    """The reply's record marked the message read; Meta refuses the call right after: the mark is
    released, so an operator's open tries again."""
    worker = start_worker()
    fake_graph.receipt_script.extend([Behaviour(500, 131000), Behaviour(hang=6.0)])
    refused = deliver(client, fake_graph, "Hi, what are your opening hours?")
    wait_until(lambda: reply_send(fake_graph, refused), what="the reply")
    settled(db)  # recorded, and marked read with the record: the call and the release come after it
    wait_until(lambda: receipt_at(db, refused) is None, what="the mark released")
    # a call that never answers is cut off after 1 s (END_GRACE): the mark is released all the same
    hung = deliver(client, fake_graph, "And on Sunday, what are your opening hours?")
    wait_until(lambda: reply_send(fake_graph, hung), what="the second reply")
    settled(db)
    wait_until(lambda: receipt_at(db, hung) is None, what="the second mark released")
    assert receipt_at(db, refused) is None
    assert [r.body["message_id"] for r in fake_graph.receipts] == [refused, hung]  # one call each
    jobs = db.execute("SELECT status FROM outbound_jobs ORDER BY id").fetchall()
    assert [j["status"] for j in jobs] == ["done", "done"]
    assert "read receipt failed kind=read" in worker.output()


def test_a_slow_model_keeps_the_indicator_refreshed_until_it_answers(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    slow_model: tuple[SlowModel, str],
) -> None:
    _, url = slow_model
    start_worker(
        WAYPOST_ORCHESTRATOR="openai",
        OPENAI_BASE_URL=url,
        OPENAI_MODEL="gpt-test",
        WAYPOST_TYPING_REFRESH_SECONDS="0.5",
    )
    first = deliver(client, fake_graph, "Where is my order?")
    send = wait_until(lambda: reply_send(fake_graph, first), what="the slow reply")
    assert send.body["text"]["body"] == "Slow answer to: Where is my order?"
    # A second slow answer: time enough for a refresh that outlived the first one to show up.
    second = deliver(client, fake_graph, "Thanks")
    wait_until(lambda: reply_send(fake_graph, second), what="the second slow reply")
    settled(db)

    calls = fake_graph.typing_calls(first)
    assert len(calls) >= 3, calls  # 1.8 s of model at 0.5 s: the first call and refreshes
    assert all(call.at <= send.at for call in calls)  # none after the answer
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 0.25 for gap in gaps), gaps  # refreshed on schedule, not in a burst
    assert fake_graph.read_calls() == []


def test_a_failing_or_hanging_read_call_neither_fails_nor_holds_up_the_reply(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(WAYPOST_READ_RECEIPT_TIMEOUT="4", WAYPOST_TYPING_AFTER_SECONDS="0")
    fake_graph.receipt_script.extend([Behaviour(500, 131000), Behaviour(hang=6.0)])

    refused = deliver(client, fake_graph, "Do you deliver to Lyon?")
    wait_until(lambda: reply_send(fake_graph, refused), what="the reply despite a refused read call")
    settled(db)
    assert receipt_at(db, refused) is None  # Meta refused it: not recorded as read

    hung = deliver(client, fake_graph, "And to Paris?")
    send = wait_until(lambda: reply_send(fake_graph, hung), what="the reply despite a hanging read call")
    settled(db)
    stored = row(db, "SELECT created_at FROM messages WHERE wa_message_id = %s", hung)["created_at"]
    sent = row(
        db,
        "SELECT sent_at FROM messages WHERE reply_to_message_id = (SELECT id FROM messages WHERE wa_message_id = %s)",
        hung,
    )["sent_at"]
    delay = (sent - stored).total_seconds()
    # the reply waits at most 1 s for a call still on its way: far from the call's 4 s timeout
    print(f"\nreply {delay:.2f} s after its message, its read call hanging")  # shown with -s
    assert delay < 2.5, delay
    assert send.accepted and receipt_at(db, hung) is None

    jobs = db.execute("SELECT status, attempts FROM outbound_jobs ORDER BY id").fetchall()
    assert [(j["status"], j["attempts"]) for j in jobs] == [("done", 1), ("done", 1)]
    assert len(fake_graph.receipts) == 2  # one call each, never retried
    log = worker.output()
    assert "read receipt failed kind=typing" in log and "(not retried)" in log


def test_a_message_left_to_an_operator_is_marked_read_once_when_an_operator_opens_it(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
) -> None:
    start_worker(WAYPOST_TYPING_AFTER_SECONDS="0")  # the AI's reply: one typing call
    create_operator(database_url)
    inbox = Inbox(client)
    answered = deliver(client, fake_graph, "Hello")
    wait_until(lambda: reply_send(fake_graph, answered), what="the AI's reply")
    cid = conversation_id(db, CONTACT)
    pause_ai(inbox, cid)

    waiting = [deliver(client, fake_graph, "I want to speak to someone"), deliver(client, fake_graph, "Anyone?")]
    settled(db)
    skipped = db.execute("SELECT skip_reason FROM outbound_jobs WHERE status = 'skipped'").fetchall()
    assert len(skipped) == 2
    assert [r.wa_message_id for r in fake_graph.receipts] == [answered]  # nothing for the paused ones
    assert all(receipt_at(db, wamid) is None for wamid in waiting)

    # The operator opens the conversation: the latest waiting message is marked read, once.
    assert inbox.get(f"/inbox/conversations/{cid}").status_code == 200
    [read] = wait_until(lambda: fake_graph.read_calls(), what="the read call after the open")
    assert read.body == {"messaging_product": "whatsapp", "status": "read", "message_id": waiting[-1]}
    assert all(receipt_at(db, wamid) is not None for wamid in waiting)
    assert row(db, "SELECT operator_read_at FROM conversations WHERE id = %s", cid)["operator_read_at"] is not None

    # Opening it again, by page or API, sends nothing more.
    assert inbox.get(f"/inbox/conversations/{cid}").status_code == 200
    assert inbox.post(f"/api/inbox/conversations/{cid}/read").status_code == 200
    wait_until(lambda: receipt_jobs_done(db), what="the read_receipt jobs")
    assert len(fake_graph.read_calls()) == 1

    # A later message waits again, and the next open marks it: the API's "read" counts as an open.
    later = deliver(client, fake_graph, "Hello again?")
    settled(db)
    assert inbox.post(f"/api/inbox/conversations/{cid}/read").status_code == 200
    wait_until(lambda: len(fake_graph.read_calls()) == 2, what="the second read call")
    assert fake_graph.read_calls()[-1].wa_message_id == later


def test_a_refused_read_call_after_an_open_is_tried_again_at_the_next_open(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
) -> None:
    worker = start_worker(WAYPOST_TYPING_AFTER_SECONDS="0")
    create_operator(database_url)
    inbox = Inbox(client)
    first = deliver(client, fake_graph, "Hello")
    wait_until(lambda: reply_send(fake_graph, first), what="the AI's reply")
    cid = conversation_id(db, CONTACT)
    pause_ai(inbox, cid)
    waiting = deliver(client, fake_graph, "Is anyone there?")
    settled(db)

    fake_graph.receipt_script.append(Behaviour(503))
    assert inbox.post(f"/api/inbox/conversations/{cid}/read").status_code == 200
    wait_until(lambda: len(fake_graph.receipts) == 2, what="the refused read call")
    wait_until(lambda: receipt_jobs_done(db), what="the read_receipt job")
    assert receipt_at(db, waiting) is None  # released: Meta did not mark it
    assert "read receipt failed kind=read" in worker.output()

    assert inbox.post(f"/api/inbox/conversations/{cid}/read").status_code == 200
    [read] = wait_until(lambda: fake_graph.read_calls(), what="the read call at the next open")
    assert read.wa_message_id == waiting and receipt_at(db, waiting) is not None


def test_without_the_typing_indicator_the_reply_is_preceded_by_a_plain_read(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    start_worker(WAYPOST_TYPING_INDICATOR="0")
    wamid = deliver(client, fake_graph, "Hi")
    send = wait_until(lambda: reply_send(fake_graph, wamid), what="the reply")
    settled(db)
    [read] = fake_graph.receipts
    assert read.body == {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
    assert read.at <= send.at and receipt_at(db, wamid) is not None


@pytest.mark.parametrize("mode", ["never", "ai"])
def test_never_makes_no_call_and_ai_none_for_an_operators_open(
    mode: str,
    settings: Settings,
    db: psycopg.Connection,
    database_url: str,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
) -> None:
    start_worker(WAYPOST_READ_RECEIPTS=mode, WAYPOST_TYPING_AFTER_SECONDS="0")
    configured = settings.model_copy(update={"read_receipts": mode})
    with WebServer(configured) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        create_operator(database_url)
        inbox = Inbox(client)
        answered = deliver(client, fake_graph, "Hello")
        wait_until(lambda: reply_send(fake_graph, answered), what="the AI's reply")
        cid = conversation_id(db, CONTACT)
        pause_ai(inbox, cid)
        waiting = deliver(client, fake_graph, "Anyone?")
        settled(db)
        assert inbox.get(f"/inbox/conversations/{cid}").status_code == 200
        assert inbox.post(f"/api/inbox/conversations/{cid}/read").status_code == 200
    # `ai`: only the answered message, with its typing indicator; `never`: nothing at all
    assert [r.wa_message_id for r in fake_graph.typing_calls()] == ([answered] if mode == "ai" else [])
    assert fake_graph.read_calls() == [] and len(fake_graph.receipts) == (mode == "ai")
    assert db.execute("SELECT 1 FROM procrastinate_jobs WHERE task_name = 'read_receipt'").fetchone() is None
    assert (receipt_at(db, answered) is not None) == (mode == "ai") and receipt_at(db, waiting) is None


def test_the_fake_graph_api_takes_read_calls_as_meta_does(fake_graph: FakeGraph) -> None:
    url = f"{fake_graph.url}/v25.0/{payloads.PHONE_NUMBER_ID}/messages"
    headers = {"Authorization": f"Bearer {fake_graph.access_token}"}
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1"}
    with httpx.Client(timeout=10, headers=headers) as http:
        assert http.post(url, json=read).json() == {"success": True}
        typing = {**read, "typing_indicator": {"type": "text"}}
        assert http.post(url, json=typing).status_code == 200
        assert http.post(url, json={**read, "typing_indicator": {"type": "audio"}}).status_code == 400
        # a message the business sent cannot be marked read
        sent = http.post(url, json={"messaging_product": "whatsapp", "to": CONTACT, "text": {"body": "hi"}})
        own = sent.json()["messages"][0]["id"]
        refused = http.post(url, json={**read, "message_id": own})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == 131009
        # once told which messages it delivered, the fake refuses any other wamid
        fake_graph.inbound("wamid.KNOWN")
        assert http.post(url, json={**read, "message_id": "wamid.OTHER"}).json()["error"]["code"] == 131009
        assert http.post(url, json={**read, "message_id": "wamid.KNOWN"}).status_code == 200
        recorded = http.get(f"{fake_graph.url}/_fake/receipts").json()
    assert [r["wa_message_id"] for r in recorded if r["accepted"]] == ["wamid.IN1", "wamid.IN1", "wamid.KNOWN"]
    assert len(fake_graph.requests) == 1  # only the send
    assert [len(fake_graph.typing_calls()), len(fake_graph.read_calls())] == [1, 2]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"messaging_product": "sms", "status": "read", "message_id": "w"}, "messaging_product"),
        ({"messaging_product": "whatsapp", "status": "delivered", "message_id": "w"}, "status"),
        ({"messaging_product": "whatsapp", "status": "read"}, "message_id"),
        ({"messaging_product": "whatsapp", "status": "read", "message_id": "w", "to": "1"}, "unexpected"),
        ({"messaging_product": "whatsapp", "status": "read", "message_id": "w", "typing_indicator": True}, "typing"),
    ],
)
def test_the_fake_refuses_malformed_read_calls(body: dict[str, Any], problem: str) -> None:
    found = receipt_problem(body)
    assert found is not None and problem in found


def test_two_opens_at_once_claim_the_message_once(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    """The claim is one UPDATE: a second open waits on the first one's row locks, then finds nothing."""
    message = payloads.text_message("hi", wa_id=CONTACT)
    assert post_webhook(client, payloads.dumps(payloads.inbound(message))).status_code == 200
    cid = conversation_id(db, CONTACT)
    claim = query("read_receipt_claim")
    found: dict[str, Any] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as first, psycopg.connect(database_url) as second:
        second_pid = second.info.backend_pid
        mine = first.execute(claim, {"conversation_id": cid}).fetchone()

        def other_open() -> None:
            found["second"] = second.execute(claim, {"conversation_id": cid}).fetchone()
            second.commit()

        racer = threading.Thread(target=other_open)
        racer.start()
        blocked = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
        wait_until(lambda: db.execute(blocked, (second_pid,)).fetchone(), what="the second open to wait")
        first.commit()
        racer.join(timeout=10)
    assert mine is not None and mine["message_id"] == row(db, "SELECT id FROM messages")["id"]
    assert found == {"second": (None,)}  # nothing left to claim
