"""Operator messages through the worker: the same claim/send/record path as AI replies, its failures
shown to the operator, and the sweep putting a lost send back in motion."""

from __future__ import annotations

import httpx
import psycopg

from tests.conftest import CRON_SECRET, post_webhook, wait_for
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.settings import Settings


def setup_conversation(client: httpx.Client, db: psycopg.Connection, database_url: str) -> tuple[Inbox, int]:
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}]
    body = payloads.dumps(payloads.inbound(payloads.text_message("hello"), contacts=contacts))
    assert post_webhook(client, body).status_code == 200
    create_operator(database_url)
    return Inbox(client), conversation_id(db)


def send(inbox: Inbox, cid: int, text: str) -> dict:
    answer = inbox.post(f"/api/inbox/conversations/{cid}/messages", {"body": text})
    assert answer.status_code == 202, answer.text
    return answer.json()["message"]


def test_a_permanent_error_fails_the_message_with_metas_explanation(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, cid = setup_conversation(client, db, database_url)
    start_worker()
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND status = 'sent'")
    fake_graph.script.append(Behaviour(status=400, code=131047))
    message = send(inbox, cid, "are you there?")
    row = wait_for(db, "SELECT * FROM messages WHERE id = %s AND status = 'failed'", [message["id"]])
    assert row["error"][0]["code"] == 131047 and row["send_attempts"] == 1
    notification = wait_for(db, "SELECT * FROM notifications WHERE kind = 'send_failed'")
    assert notification["message_id"] == message["id"] and "131047" in notification["body"]
    shown = inbox.get(f"/api/inbox/conversations/{cid}").json()["messages"][-1]
    assert shown["status"] == "failed" and shown["error"]["code"] == 131047
    assert "24 hours" in shown["error"]["message"]
    assert len([r for r in fake_graph.requests if r.body["text"]["body"] == "are you there?"]) == 1


def test_a_retryable_error_is_retried_then_sent_once(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, cid = setup_conversation(client, db, database_url)
    start_worker()
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND status = 'sent'")
    fake_graph.script.extend([Behaviour(status=503), Behaviour(status=500, code=131000)])
    message = send(inbox, cid, "one moment please")
    row = wait_for(db, "SELECT * FROM messages WHERE id = %s AND status = 'sent'", [message["id"]], timeout=30)
    assert row["send_attempts"] == 3
    accepted = [r for r in fake_graph.accepted() if r.body["text"]["body"] == "one moment please"]
    assert len(accepted) == 1 and accepted[0].body["biz_opaque_callback_data"] == row["idempotency_key"]
    # its job, retried twice, ended once: by the send's record, in its transaction (worker.job_end)
    recorded = db.execute("SELECT xmin::text AS xid FROM messages WHERE id = %s", [message["id"]]).fetchone()
    ended = db.execute(
        "SELECT e.xmin::text AS xid FROM procrastinate_events e JOIN procrastinate_jobs q ON q.id = e.job_id"
        " WHERE q.task_name = 'send_operator_message' AND q.args ->> 'message_id' = %s AND e.type = 'succeeded'",
        [str(message["id"])],
    ).fetchall()
    assert [e["xid"] for e in ended] == [recorded["xid"]]


def test_the_sweep_re_defers_a_lost_operator_send_and_gives_up_when_attempts_are_spent(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    fake_graph: FakeGraph,
    start_worker,
    settings: Settings,
) -> None:
    inbox, cid = setup_conversation(client, db, database_url)
    lost = send(inbox, cid, "lost in the queue")
    spent = send(inbox, cid, "out of attempts")
    db.execute("DELETE FROM procrastinate_jobs WHERE task_name = 'send_operator_message'")
    db.execute("UPDATE messages SET updated_at = now() - interval '1 minute' WHERE author = 'operator'")
    db.execute("UPDATE messages SET send_attempts = %s WHERE id = %s", [settings.reply_max_attempts, spent["id"]])

    def sweep() -> dict:
        answer = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    report = sweep()
    assert (report["operator_messages_redeferred"], report["operator_messages_failed"]) == (1, 1)
    assert sweep()["operator_messages_redeferred"] == 0  # queued now
    start_worker()
    wait_for(db, "SELECT 1 FROM messages WHERE id = %s AND status = 'sent'", [lost["id"]])
    failed = db.execute("SELECT status, error FROM messages WHERE id = %s", [spent["id"]]).fetchone()
    assert failed["status"] == "failed" and "gave up" in failed["error"][0]["message"]
    bodies = [r.body["text"]["body"] for r in fake_graph.requests]
    assert bodies.count("lost in the queue") == 1 and "out of attempts" not in bodies
