"""One answer per burst (README "Turns"): messages of one conversation within the quiet window form
one turn, answered by exactly one reply that sees them all; a message after the claim starts the next
turn. Real PostgreSQL, web and worker processes, the fake Graph API and an OpenAI-compatible model."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import CRON_SECRET, ServerThread, WebServer, post_webhook, settled, wait_for, wait_until
from tests.test_reply import deliver
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings
from waypost.sql import query

WINDOW = 1.5
MAX_WAIT = 6.0
BURST = ["hi", "I ordered a lamp", "order number 4411", "it arrived broken", "can I get a new one?"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"turn_quiet_seconds": WINDOW, "turn_max_wait_seconds": MAX_WAIT})


def echo_worker(start_worker: Any, tmp_path: Path) -> Any:
    """A worker whose rules answer anything with the words they were given."""
    rules = tmp_path / "rules.toml"
    rules.write_text('fallback = "You said: {message}"\n')
    return start_worker(WAYPOST_RULES_FILE=str(rules))


def sent_texts(fake_graph: FakeGraph) -> list[str]:
    return [r.body.get("text", {}).get("body", "") for r in fake_graph.accepted()]


def test_a_burst_of_five_gets_one_reply_that_mentions_all_five(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Any, tmp_path: Path
) -> None:
    echo_worker(start_worker, tmp_path)
    messages = [deliver(client, text) for text in BURST]
    assert post_webhook(client, payloads.dumps(payloads.inbound(messages[2]))).status_code == 200  # redelivered
    wait_for(db, "SELECT 1 FROM messages WHERE direction = 'outbound' AND status = 'sent'")
    settled(db)

    [reply] = fake_graph.accepted()
    text = reply.body["text"]["body"]
    assert all(said in text for said in BURST), text
    assert "context" not in reply.body  # a reply to several quotes none
    assert reply.body["biz_opaque_callback_data"] == f"reply:{messages[0]['id']}"
    [job] = db.execute("SELECT * FROM outbound_jobs").fetchall()
    assert (job["status"], job["message_count"], job["closed_at"] is not None) == ("done", 5, True)
    turns = db.execute("SELECT turn_id, created_at FROM messages WHERE direction = 'inbound' ORDER BY id").fetchall()
    assert [t["turn_id"] for t in turns] == [job["id"]] * 5
    row = db.execute(
        "SELECT r.created_at - max(i.created_at) AS after_last, r.reply_to_message_id = j.inbound_message_id AS linked"
        "  FROM messages r, messages i, outbound_jobs j"
        " WHERE r.direction = 'outbound' AND i.direction = 'inbound' GROUP BY r.id, j.inbound_message_id"
    ).fetchone()
    # claimed once the window after the last message was over, never before
    assert row["linked"] and row["after_last"].total_seconds() >= WINDOW - 0.01, row


def test_a_message_after_the_claim_starts_the_next_turn(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Any, tmp_path: Path
) -> None:
    echo_worker(start_worker, tmp_path)
    first = deliver(client, "where is my parcel?")
    wait_for(db, "SELECT 1 FROM outbound_jobs WHERE closed_at IS NOT NULL")  # its reply is claimed
    second = deliver(client, "never mind, it just came")
    wait_for(db, "SELECT 1 FROM messages WHERE direction = 'outbound' AND status = 'sent' HAVING count(*) = 2")
    settled(db)

    assert sent_texts(fake_graph) == ["You said: where is my parcel?", "You said: never mind, it just came"]
    jobs = db.execute("SELECT id, message_count, status FROM outbound_jobs ORDER BY id").fetchall()
    assert [(j["message_count"], j["status"]) for j in jobs] == [(1, "done"), (1, "done")]
    turn_of = {
        r["wa_message_id"]: r["turn_id"]
        for r in db.execute("SELECT wa_message_id, turn_id FROM messages WHERE direction = 'inbound'").fetchall()
    }
    assert [turn_of[first["id"]], turn_of[second["id"]]] == [jobs[0]["id"], jobs[1]["id"]]
    # a single message's reply quotes it, as without turns
    assert [r.body.get("context") for r in fake_graph.accepted()] == [
        {"message_id": first["id"]},
        {"message_id": second["id"]},
    ]


class BurstModel:
    """An OpenAI-compatible chat endpoint that answers, after `delay` seconds, with every customer
    message since the business last spoke; `asked` signals each request as it arrives."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.asked = threading.Event()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.requests.append(body)
        self.asked.set()
        await asyncio.sleep(self.delay)
        said: list[str] = []
        for message in reversed(body["messages"]):
            if message["role"] != "user":
                break
            said.insert(0, message["content"])
        answer = {"role": "assistant", "content": "Answering: " + " | ".join(said)}
        return JSONResponse({"choices": [{"index": 0, "message": answer, "finish_reason": "stop"}]})


@pytest.fixture
def model() -> Iterator[tuple[BurstModel, str]]:
    burst_model = BurstModel(delay=1.5)
    with ServerThread(burst_model.app) as server:
        yield burst_model, f"{server.url}/v1"


def test_a_message_while_the_ai_writes_is_answered_in_the_same_reply(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Any,
    model: tuple[BurstModel, str],
) -> None:
    burst_model, base_url = model
    start_worker(WAYPOST_ORCHESTRATOR="openai", OPENAI_BASE_URL=base_url, OPENAI_API_KEY="test-key", OPENAI_MODEL="m")
    deliver(client, "do you ship to Norway?")
    assert burst_model.asked.wait(20)  # the AI is writing its answer…
    deliver(client, "and to Iceland?")  # …when the customer adds to the turn: it is written again
    wait_for(db, "SELECT 1 FROM messages WHERE direction = 'outbound' AND status = 'sent'")
    settled(db)

    assert sent_texts(fake_graph) == ["Answering: do you ship to Norway? | and to Iceland?"]
    assert len(burst_model.requests) == 2
    system = burst_model.requests[-1]["messages"][0]["content"]
    assert "The last 2 messages arrived together" in system
    [job] = db.execute("SELECT status, message_count, attempts FROM outbound_jobs").fetchall()
    assert (job["status"], job["message_count"]) == ("done", 2)


def test_a_long_burst_is_answered_by_the_maximum_wait_and_every_message_once(
    settings: Settings, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Any, tmp_path: Path
) -> None:
    quick = settings.model_copy(update={"turn_quiet_seconds": 1.0, "turn_max_wait_seconds": 2.5})
    with WebServer(quick) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        fake_graph.webhook_url = web.url + "/api/webhooks/whatsapp"
        echo_worker(start_worker, tmp_path)
        stop = threading.Event()
        sent: list[str] = []
        for i in range(12):  # one every 0.4 s: the window alone would never end
            sent.append(deliver(client, f"line {i}")["id"])
            stop.wait(0.4)
        settled(db)  # a turn still gathering counts as open work

    jobs = db.execute("SELECT id, inbound_message_id, message_count, created_at, status FROM outbound_jobs").fetchall()
    assert len(jobs) >= 2 and {j["status"] for j in jobs} == {"done"}
    assert sum(j["message_count"] for j in jobs) == len(sent)
    texts = sent_texts(fake_graph)
    assert len(texts) == len(jobs)  # one reply per turn
    assert sorted(int(w) for t in texts for w in t.replace("You said: ", "").replace("line ", "").split("\n")) == list(
        range(12)
    )  # every line answered, once
    first_claim = db.execute(
        "SELECT r.created_at - j.created_at AS waited FROM messages r JOIN outbound_jobs j"
        " ON r.reply_to_message_id = j.inbound_message_id WHERE r.direction = 'outbound' ORDER BY j.id LIMIT 1"
    ).fetchone()["waited"]
    assert first_claim.total_seconds() < 2.5 + 2.0, first_claim  # the cap, with room for a busy machine


def ingest(conn: psycopg.Connection, text: str, quiet: float = WINDOW) -> dict[str, Any]:
    """A contact's text message stored as the webhook stores it: the row of `ingest_inbound_message`."""
    message = payloads.text_message(text, wa_id="16505559999")
    params = {
        "phone_number_id": payloads.PHONE_NUMBER_ID,
        "wa_id": "16505559999",
        "user_id": None,
        "parent_user_id": None,
        "username": None,
        "contact_name": None,
        "new_wa_id": None,
        "new_user_id": None,
        "wa_message_id": message["id"],
        "type": "text",
        "body": text,
        "payload": Jsonb(message),
        "contact_sent_at": dt.datetime.now(dt.UTC),
        "needs_reply": True,
        "request_id": "r",
        "quiet_seconds": quiet,
        "max_wait_seconds": MAX_WAIT,
        "reply_task": None,
        "reply_queue": None,
    }
    row = conn.execute(query("ingest_inbound_message"), params).fetchone()
    assert row is not None
    return row


def _closing(name: str, turn: int, last_message_id: int, conversation_id: int) -> tuple[str, dict[str, Any]]:
    """`turn_close` (a handover, an unreadable file: closed before deciding), or the reply's claim that
    closes its turn in the same statement, with its parameters."""
    params: dict[str, Any] = {"outbound_job_id": turn, "last_message_id": last_message_id}
    if name == "reply_close_and_claim":
        params |= {
            "conversation_id": conversation_id,
            "idempotency_key": f"reply:turn-{turn}",
            "author": "ai",
            "type": "text",
            "body": "an answer",
            "payload": None,
            "reply_to_message_id": None,
            "stale_after": 60,
            "grace": 600,
        }
    return query(name), params


@pytest.mark.parametrize("name", ["turn_close", "reply_close_and_claim"])
def test_the_claim_and_a_joining_message_never_both_win(db: psycopg.Connection, database_url: str, name: str) -> None:
    """SQL alone decides: a message stored while the reply is being claimed either joins the turn
    before the claim (which then refuses: the reply has not seen it) or starts the next turn."""
    first = ingest(db, "first")
    turn = first["outbound_job_id"]
    assert (first["defer"], db.execute("SELECT status FROM outbound_jobs").fetchone()["status"]) == (False, "gathering")
    close, params = _closing(name, turn, first["message_id"], first["conversation_id"])
    with (
        psycopg.connect(database_url, row_factory=dict_row) as joining,
        psycopg.connect(database_url, autocommit=True) as claiming,
    ):
        second = ingest(joining, "second")  # joins, and holds the turn's row until it commits
        assert second["outbound_job_id"] == turn
        closing: list[Any] = []
        claim = threading.Thread(target=lambda: closing.append(claiming.execute(close, params).fetchone()))
        claim.start()
        wait_for(db, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%closed_at%%'")
        joining.commit()
        claim.join(10)
    assert closing == [None]  # the run read one message, the turn has two: written again
    assert db.execute("SELECT count(*) AS n FROM messages WHERE direction = 'outbound'").fetchone()["n"] == 0
    _, params = _closing(name, turn, second["message_id"], first["conversation_id"])
    assert db.execute(close, params).fetchone()
    third = ingest(db, "third")  # after the claim: the next turn
    assert third["outbound_job_id"] != turn
    assert db.execute("SELECT message_count FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["message_count"] == 2
    # without a window, every message is its own turn, queued by the caller at once (as before turns)
    alone = ingest(db, "fourth", quiet=0)
    assert alone["defer"] and alone["outbound_job_id"] not in (turn, third["outbound_job_id"])


def test_a_retry_claims_its_closed_turn_without_waiting_for_the_jobs_row(
    db: psycopg.Connection, database_url: str
) -> None:
    """A retry's turn is closed already: its claim leaves the job's row alone. A status webhook locks
    a message and then the job it closes; a claim holding the job while it waits for the message would
    deadlock with it."""
    first = ingest(db, "first")
    turn = first["outbound_job_id"]
    close, params = _closing("reply_close_and_claim", turn, first["message_id"], first["conversation_id"])
    assert db.execute(close, params).fetchone()["outcome"] == "claimed"
    closed_at = db.execute("SELECT closed_at FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["closed_at"]
    db.execute(
        "UPDATE messages SET status = 'failed', sending_since = NULL WHERE idempotency_key = %s",
        [params["idempotency_key"]],
    )
    db.commit()
    with psycopg.connect(database_url, row_factory=dict_row) as holder:
        holder.execute("SELECT 1 FROM outbound_jobs WHERE id = %s FOR UPDATE", [turn])  # held until the end
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as retry:
            retry.execute("SET lock_timeout = '5s'")
            again = retry.execute(close, params).fetchone()
    assert again is not None and again["outcome"] == "failed"  # the claim's answer, given without waiting
    assert db.execute("SELECT closed_at FROM outbound_jobs WHERE id = %s", [turn]).fetchone()["closed_at"] == closed_at


def test_a_later_turn_of_a_conversation_is_released_only_after_the_earlier_one(
    db: psycopg.Connection, database_url: str
) -> None:
    """A message that comes while its conversation's turn is being released starts the next turn
    (SKIP LOCKED), so two turns can be due at once, taken by two turn clocks. procrastinate runs the
    jobs of one conversation in job id order but sees only committed jobs: had the later turn been
    queued and committed first, its reply would go first (seen once in the fault suite's two workers).
    A turn waits while an earlier turn of its conversation still gathers."""
    first = ingest(db, "first", quiet=0.05)
    db.commit()
    all_due = "SELECT 1 WHERE clock_timestamp() > (SELECT max(due_at) FROM outbound_jobs)"
    turns_due = query("turns_due")
    wait_for(db, all_due)
    with (
        psycopg.connect(database_url, row_factory=dict_row) as releasing,  # a clock, not committed yet
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as other_clock,
    ):
        held = releasing.execute(turns_due, {"min_age": 0}).fetchall()
        assert [turn["id"] for turn in held] == [first["outbound_job_id"]]
        second = ingest(db, "second", quiet=0.05)  # the first turn's row is held: the next turn
        db.commit()
        assert second["outbound_job_id"] != first["outbound_job_id"]
        wait_for(db, all_due)
        assert other_clock.execute(turns_due, {"min_age": 0}).fetchall() == []
        release = {"outbound_job_id": first["outbound_job_id"], "procrastinate_job_id": None}
        releasing.execute(query("turn_release"), release)
        releasing.commit()
        due = other_clock.execute(turns_due, {"min_age": 0}).fetchall()
        assert [turn["id"] for turn in due] == [second["outbound_job_id"]]


def test_the_sweep_queues_a_turn_no_clock_did(client: httpx.Client, db: psycopg.Connection) -> None:
    """No worker runs (so no turn clock): the cron sweep queues the reply of a turn over a second past
    its window, once."""
    deliver(client, "anyone there?")
    deliver(client, "hello?")

    def sweep() -> dict[str, Any]:
        answer = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"})
        return answer.json()

    released = wait_until(lambda: sweep()["turns_released"], timeout=20, what="the sweep to release the turn")
    assert released == 1 and sweep()["turns_released"] == 0
    job = db.execute(
        "SELECT j.status, j.message_count, q.task_name, q.status AS queued FROM outbound_jobs j"
        " JOIN procrastinate_jobs q ON q.id = j.procrastinate_job_id"
    ).fetchone()
    assert job == {"status": "pending", "message_count": 2, "task_name": "send_reply", "queued": "todo"}
    assert db.execute("SELECT count(*) AS n FROM messages WHERE turn_id IS NOT NULL").fetchone()["n"] == 2


def test_deleting_the_first_message_of_a_turn_still_answers_the_rest(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Any, tmp_path: Path
) -> None:
    echo_worker(start_worker, tmp_path)
    first = deliver(client, "hi")
    deliver(client, "my lamp arrived broken")
    revoke = payloads.revoke_message(first["id"])
    assert post_webhook(client, payloads.dumps(payloads.inbound(revoke))).status_code == 200  # while it gathers
    wait_for(db, "SELECT 1 FROM messages WHERE direction = 'outbound' AND status = 'sent'")
    settled(db)

    assert sent_texts(fake_graph) == ["You said: my lamp arrived broken"]  # the AI forgets the deleted one
    kinds = [r["kind"] for r in db.execute("SELECT kind FROM notifications").fetchall()]
    assert "message_deleted" not in kinds  # it was not answered yet: nothing to tell an operator
