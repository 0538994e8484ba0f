"""The reply worker end to end: real PostgreSQL, real worker subprocesses, the fake Graph API."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import psycopg

from tests.conftest import post_webhook, settled, wait_for, wait_until
from waypost.devtools import payloads
from waypost.devtools.fake_graph import Behaviour, FakeGraph

STAGES = (
    "picked job",
    "loaded conversation",
    "loaded inbound message",
    "orchestrator start",
    "orchestrator end",
    "send start",
    "send end",
    "message row confirmed",
    "job done",
)


def job_with_status(db: psycopg.Connection, *statuses: str, count: int = 1) -> list[dict]:
    wait_for(db, "SELECT 1 FROM outbound_jobs WHERE status = ANY(%s) HAVING count(*) >= %s", [list(statuses), count])
    return db.execute("SELECT * FROM outbound_jobs ORDER BY id").fetchall()


def outbound(db: psycopg.Connection) -> list[dict]:
    return db.execute("SELECT * FROM messages WHERE direction = 'outbound' ORDER BY id").fetchall()


def deliver(client: httpx.Client, text: str, wa_id: str = "16505551234", **kwargs) -> dict:
    message = payloads.text_message(text, wa_id=wa_id, **kwargs)
    response = post_webhook(client, payloads.dumps(payloads.inbound(message)))
    assert response.status_code == 200, response.text
    return message


def test_webhook_to_reply_end_to_end(client, db, fake_graph: FakeGraph, start_worker) -> None:
    worker = start_worker()
    started = time.monotonic()
    inbound = deliver(client, "Hi there, what are your opening hours?", wa_id="16505550001")
    [job] = job_with_status(db, "done")
    elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed

    [request] = fake_graph.requests
    assert request.accepted and request.phone_number_id == payloads.PHONE_NUMBER_ID
    assert request.body["to"] == "16505550001"
    assert request.body["context"] == {"message_id": inbound["id"]}
    assert request.body["biz_opaque_callback_data"] == f"reply:{inbound['id']}"
    assert "open Monday to Friday" in request.body["text"]["body"]

    [reply] = outbound(db)
    assert (reply["author"], reply["status"], reply["wa_message_id"]) == ("ai", "sent", request.wa_message_id)
    assert reply["idempotency_key"] == f"reply:{inbound['id']}" and reply["sent_at"] is not None
    assert reply["body"] == request.body["text"]["body"]
    assert (job["attempts"], job["last_error"]) == (1, None)
    # the send's record ended the procrastinate job, in its own transaction (worker.job_end)
    closed = db.execute("SELECT xmin::text AS xid FROM outbound_jobs WHERE id = %s", [job["id"]]).fetchone()
    ended = db.execute(
        "SELECT xmin::text AS xid FROM procrastinate_events WHERE job_id = %s AND type = 'succeeded'",
        [job["procrastinate_job_id"]],
    ).fetchall()
    assert [e["xid"] for e in ended] == [closed["xid"]]

    prefix = f"request_id={job['request_id']} job_id={job['procrastinate_job_id']}"

    def missing_stages() -> list[str]:
        lines = worker.output().splitlines()
        return [s for s in STAGES if not any(prefix in line and f" {s} elapsed_ms=" in line for line in lines)]

    # the last stages are logged after the record's commit, which the test may see first
    wait_until(lambda: not missing_stages(), what=f"every stage in the worker's log: {STAGES}")


def test_duplicate_delivery_gives_one_send(client, db, fake_graph: FakeGraph, start_worker) -> None:
    start_worker()
    body = payloads.dumps(payloads.inbound(payloads.text_message("price?")))
    for _ in range(3):
        assert post_webhook(client, body).status_code == 200
    job_with_status(db, "done")
    settled(db)
    assert len(fake_graph.requests) == 1 and len(outbound(db)) == 1


def test_retryable_error_then_success_records_exactly_one_send(client, db, fake_graph: FakeGraph, start_worker) -> None:
    fake_graph.script.extend([Behaviour(400, 130429, retry_after="1"), Behaviour(503)])
    start_worker()
    deliver(client, "hello")
    [job] = job_with_status(db, "done")
    assert len(fake_graph.requests) == 3
    assert [r.accepted for r in fake_graph.requests] == [False, False, True]
    assert job["attempts"] == 3
    [reply] = outbound(db)
    assert reply["status"] == "sent" and reply["send_attempts"] == 3 and reply["error"] is None
    assert reply["wa_message_id"] == fake_graph.requests[-1].wa_message_id
    # the retry honoured Retry-After: 1
    assert fake_graph.requests[1].at - fake_graph.requests[0].at >= 0.9


def test_permanent_error_fails_notifies_and_never_retries(client, db, fake_graph: FakeGraph, start_worker) -> None:
    fake_graph.script.append(Behaviour(400, 131047))
    start_worker()
    deliver(client, "hello")
    [job] = job_with_status(db, "failed")
    assert "131047" in job["last_error"]
    [reply] = outbound(db)
    assert reply["status"] == "failed" and reply["error"][0]["code"] == 131047
    note = db.execute("SELECT * FROM notifications").fetchone()
    assert note["kind"] == "send_failed" and note["message_id"] == reply["id"] and "131047" in note["body"]
    settled(db)
    assert len(fake_graph.requests) == 1


def test_retries_are_bounded(client, db, fake_graph: FakeGraph, start_worker, settings) -> None:
    fake_graph.failure_rate = 1.0  # every request fails with a transient error
    start_worker(WAYPOST_REPLY_MAX_ATTEMPTS="3")
    deliver(client, "hello")
    [job] = job_with_status(db, "failed", count=1)
    assert job["attempts"] == 3 and "gave up after 3 attempt(s)" in job["last_error"]
    assert len(fake_graph.requests) == 3
    assert outbound(db)[0]["status"] == "failed"
    assert db.execute("SELECT kind FROM notifications").fetchone()["kind"] == "send_failed"


def test_an_unclassified_error_retries_within_bounds_then_fails_and_tells_the_operator(
    client, db, fake_graph: FakeGraph, start_worker
) -> None:
    # The database refuses every AI reply: not a send failure, not the database being away.
    db.execute("ALTER TABLE messages ADD CONSTRAINT test_no_ai_replies CHECK (author <> 'ai') NOT VALID")
    start_worker(WAYPOST_REPLY_MAX_ATTEMPTS="3")
    deliver(client, "hello?")
    [job] = job_with_status(db, "failed", "done", "skipped")
    assert job["status"] == "failed" and "CheckViolation" in job["last_error"], job
    assert job["last_error"].startswith("gave up after 3 attempt(s)")
    settled(db)  # procrastinate records the run's end just after the task closed the job
    queued = db.execute("SELECT status, attempts FROM procrastinate_jobs WHERE task_name = 'send_reply'").fetchone()
    # three runs, then the task recorded the failure itself: nothing left to do or doing
    assert (queued["status"], queued["attempts"]) == ("succeeded", 3)
    note = db.execute("SELECT kind, body FROM notifications").fetchone()
    assert note["kind"] == "reply_failed" and "CheckViolation" in note["body"]
    assert fake_graph.accepted() == []


def test_hanging_send_becomes_unknown_and_a_status_webhook_completes_it(
    client, db, fake_graph: FakeGraph, start_worker
) -> None:
    # Meta accepted the message but the answer never came back in time (read timeout is 2 s).
    fake_graph.script.append(Behaviour(status=200, hang=5, accept=True))
    start_worker()
    deliver(client, "hello")
    reply = wait_for(db, "SELECT * FROM messages WHERE direction = 'outbound' AND status = 'unknown'")
    # the job's note follows the message's status, in a second statement: wait for it, not a moment
    job = wait_for(db, "SELECT * FROM outbound_jobs WHERE status = 'running' AND last_error IS NOT NULL")
    assert "outcome unknown" in job["last_error"]
    [request] = fake_graph.requests
    status = asyncio.run(
        fake_graph.post_status(
            request.wa_message_id,
            "sent",
            phone_number_id=payloads.PHONE_NUMBER_ID,
            callback_data=request.body["biz_opaque_callback_data"],
        )
    )
    assert status == 200
    [job] = job_with_status(db, "done")
    completed = db.execute("SELECT * FROM messages WHERE id = %s", [reply["id"]]).fetchone()
    assert (completed["status"], completed["wa_message_id"]) == ("sent", request.wa_message_id)
    settled(db)
    assert len(fake_graph.requests) == 1  # never resent


def test_two_workers_on_the_same_job_give_one_send(client, db, fake_graph: FakeGraph, start_worker, settings) -> None:
    fake_graph.script.append(Behaviour(status=200, hang=1.0))  # slow, so both runs overlap
    start_worker()
    start_worker()
    deliver(client, "hello")
    [job] = db.execute("SELECT * FROM outbound_jobs").fetchall()
    # A second procrastinate job for the same outbound job, without the conversation lock, so the
    # two really run at once (as after a sweep that misjudged a live job).
    asyncio.run(_defer_again(settings, job))
    job_with_status(db, "done")
    settled(db)
    assert len(fake_graph.requests) == 1 and len(outbound(db)) == 1
    assert (
        db.execute(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'send_reply' AND status = 'succeeded'"
        ).fetchone()["n"]
        == 2
    )


async def _defer_again(settings, job: dict) -> None:
    from waypost.db import create_pool
    from worker.reply import send_reply

    async with create_pool(settings) as pool, pool.connection() as conn:
        await send_reply.configure(connection=conn).defer_async(outbound_job_id=job["id"], request_id=job["request_id"])


def test_quick_messages_in_one_conversation_are_answered_in_order(
    client, db, fake_graph: FakeGraph, start_worker
) -> None:
    fake_graph.script.extend([Behaviour(status=200, hang=0.3)] * 3)
    start_worker()
    now = int(time.time())
    sent = [deliver(client, f"question {i}", wa_id="16505550007", timestamp=now + i) for i in range(3)]
    job_with_status(db, "done", count=3)
    assert [r.body["context"]["message_id"] for r in fake_graph.requests] == [m["id"] for m in sent]
    spans = [(r.at, r.at + 0.3) for r in fake_graph.requests]
    assert all(later[0] >= earlier[1] - 0.05 for earlier, later in itertools.pairwise(spans))


def test_ai_disabled_deleted_or_window_closed_is_skipped(client, db, fake_graph: FakeGraph, start_worker) -> None:
    deliver(client, "first", wa_id="111")
    db.execute("UPDATE conversations SET ai_enabled = false WHERE wa_id = '111'")
    deliver(client, "old", wa_id="222", timestamp=int(time.time()) - 25 * 3600)
    deliver(client, "to be deleted", wa_id="333")
    db.execute("UPDATE conversations SET deleted_at = now() WHERE wa_id = '333'")
    start_worker()
    jobs = job_with_status(db, "skipped", count=3)
    assert sorted(j["skip_reason"] for j in jobs) == [
        "AI disabled for this conversation",
        "conversation deleted",
        "outside the 24-hour customer service window",
    ]
    assert fake_graph.requests == [] and outbound(db) == []


def test_no_answer_from_the_ai_leaves_the_message_to_an_operator(
    client, db, fake_graph: FakeGraph, start_worker, tmp_path
) -> None:
    rules = tmp_path / "rules.toml"  # no fallback: an unmatched message gets no answer
    rules.write_text('[[rules]]\nname = "hours"\nkeywords = ["hours"]\nanswer = "9 to 5"\n')
    # as before handing over on a failure (on by default: tests/test_handover.py)
    start_worker(WAYPOST_RULES_FILE=str(rules), WAYPOST_HANDOVER_ON_AI_FAILURE="0")
    deliver(client, "can I speak to someone?")
    (job,) = job_with_status(db, "skipped")
    assert job["skip_reason"] == "the orchestrator had no reply"
    notification = db.execute("SELECT kind, body FROM notifications").fetchone()
    assert notification == {"kind": "ai_no_reply", "body": "The AI had no answer for a message; it needs a person."}
    assert outbound(db) == [] and fake_graph.requests == []
