"""Template sends under faults (issue 15): a template queued in the inbox is sent once however the
worker dies (SIGKILL after the claim, before Meta has it; after Meta accepted it, before it is
recorded), however often the form is resubmitted and whichever worker races for it; where the outcome
cannot be known, the at-least-once path is the one text sends take. A template Meta paused meanwhile
fails with Meta's error shown, is never retried, and stops being offered; a template's statuses and
price show like any message's. The machinery is the fault suite's (tests/faults/harness.py)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import (
    CRON_SECRET,
    WebServer,
    WorkerProcess,
    post_webhook,
    settled,
    wait_for,
    wait_until,
)
from tests.faults.harness import fault_settings, settle
from tests.inbox_client import Inbox, conversation_id, create_operator
from tests.test_templates import WABA, sync
from waypost.devtools import payloads
from waypost.devtools.fake_answers import error_body
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.devtools.fake_templates import template
from waypost.settings import Settings
from worker.graph import classify_response

CONTACT = "16505551234"
ORDER_READY = {"name": "order_ready", "language": "en_US", "parameters": ["Sheena", "A-17"]}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The fault suite's short timeouts (a send in flight is presumed dead after 0.5 + 3 + 5 s, an
    unknown one resent 1 s later), and the WhatsApp Business Account the templates are synced from."""
    return fault_settings(settings, send_read_timeout=3.0, whatsapp_business_account_id=WABA)


class Blackhole:
    """A TCP server that takes requests and never answers nor passes them on: a worker pointed at it
    has claimed its send and is calling Meta, and Meta has received nothing."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = b""
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self._conns.append(conn)
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                self.received += chunk

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def open_conversation(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, tmp_path: Path
) -> tuple[Inbox, int]:
    """A synced APPROVED order_ready template, and a conversation whose AI reply is sent and whose
    window has closed (only a template may go now). The worker that sent the reply is stopped."""
    fake_graph.set_templates([template("order_ready"), template("promo", category="MARKETING")])
    done = sync(settings)
    assert done.returncode == 0, done.stderr
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": CONTACT}]
    assert (
        post_webhook(
            client, payloads.dumps(payloads.inbound(payloads.text_message("hi"), contacts=contacts))
        ).status_code
        == 200
    )
    create_operator(settings.require_database_url())
    worker = WorkerProcess(settings, tmp_path / "replier.log")
    try:
        worker.wait_ready()
        wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND status = 'sent'")
        settled(db)
    finally:
        worker.stop()
    cid = conversation_id(db)
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id = %s", [cid])
    return Inbox(client), cid


def send_template(inbox: Inbox, cid: int, client_key: str, **overrides: object) -> dict:
    answer = inbox.post(
        f"/api/inbox/conversations/{cid}/template", {**ORDER_READY, "client_key": client_key, **overrides}
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


def template_sends(fake: FakeGraph, key: str, *, accepted: bool = True) -> list:
    return [r for r in fake.requests if r.body.get("biz_opaque_callback_data") == key and (r.accepted or not accepted)]


def message(db: psycopg.Connection, message_id: int) -> dict:
    row = db.execute("SELECT * FROM messages WHERE id = %s", [message_id]).fetchone()
    assert row is not None
    return row  # type: ignore[return-value]


def kill(worker: WorkerProcess) -> None:
    worker.proc.kill()  # SIGKILL: no cleanup, its job left 'doing', its claim held
    worker.proc.wait()
    worker.stop()


def test_a_worker_killed_after_the_claim_before_meta_has_the_template_sends_it_once(
    client: httpx.Client,
    web: WebServer,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    blackhole: Blackhole,
    tmp_path: Path,
) -> None:
    inbox, cid = open_conversation(client, db, settings, fake_graph, tmp_path)
    # This worker's Graph API is a hole: its request leaves, Meta never sees it.
    doomed = WorkerProcess(
        settings.model_copy(update={"whatsapp_api_base": blackhole.url, "send_read_timeout": 60.0}),
        tmp_path / "doomed.log",
    )
    doomed.wait_ready()
    queued = send_template(inbox, cid, "crash-before-meta")["message"]
    wait_until(lambda: b"POST /" in blackhole.received, what="the doomed worker's Graph call")
    kill(doomed)
    killed_at = time.time()
    held = message(db, queued["id"])
    assert (held["status"], held["send_attempts"]) == ("sending", 1) and held["sending_since"] is not None
    assert template_sends(fake_graph, held["idempotency_key"], accepted=False) == []  # Meta has nothing

    survivor = WorkerProcess(settings, tmp_path / "survivor.log")
    survivor.wait_ready()
    try:
        took = settle(settings.require_database_url(), web.url)
    finally:
        survivor.stop()
    sent = message(db, queued["id"])
    accepted = template_sends(fake_graph, sent["idempotency_key"])
    assert len(accepted) == 1 and len(template_sends(fake_graph, sent["idempotency_key"], accepted=False)) == 1
    assert accepted[0].body["template"]["name"] == "order_ready"
    assert (sent["status"], sent["wa_message_id"], sent["send_attempts"]) == ("sent", accepted[0].wa_message_id, 2)
    # resent only once the claim could no longer be live (its worker presumed dead), with the warning
    assert accepted[0].at - killed_at >= settings.sending_stale_after
    assert "resending message" in survivor.output()
    print(f"\nkilled after the claim: resent {accepted[0].at - killed_at:.1f}s after the kill, settled in {took:.1f}s")


def test_a_worker_killed_after_meta_accepted_the_template_is_completed_by_its_status_webhook(
    client: httpx.Client,
    web: WebServer,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    tmp_path: Path,
) -> None:
    inbox, cid = open_conversation(client, db, settings, fake_graph, tmp_path)
    fake_graph.script.append(Behaviour(hang=8.0))  # accepted, and the answer is slow to come back
    doomed = WorkerProcess(settings.model_copy(update={"send_read_timeout": 60.0}), tmp_path / "doomed.log")
    doomed.wait_ready()
    queued = send_template(inbox, cid, "crash-after-meta")["message"]
    key = message(db, queued["id"])["idempotency_key"]
    wait_until(lambda: template_sends(fake_graph, key), what="Meta accepting the template")
    kill(doomed)
    assert message(db, queued["id"])["status"] == "sending"  # accepted by Meta, not recorded by us

    # Meta's 'sent' status carries our key back: it records the send the worker never did.
    accepted = template_sends(fake_graph, key)[0]
    status = {"wa_message_id": accepted.wa_message_id, "status": "sent", "recipient_id": CONTACT, "callback_data": key}
    assert httpx.post(fake_graph.url + "/_fake/status", json=status, timeout=10).json() == {"webhook_status": 200}
    survivor = WorkerProcess(settings, tmp_path / "survivor.log")
    survivor.wait_ready()
    try:
        settle(settings.require_database_url(), web.url)
    finally:
        survivor.stop()
    sent = message(db, queued["id"])
    assert len(template_sends(fake_graph, key)) == 1
    assert (sent["status"], sent["wa_message_id"], sent["send_attempts"]) == ("sent", accepted.wa_message_id, 1)
    assert "resending" not in survivor.output()


@pytest.mark.parametrize("kind", ["text", "template"])
def test_without_a_status_a_send_meta_accepted_before_the_crash_is_resent_at_least_once_text_or_template(
    kind: str,
    client: httpx.Client,
    web: WebServer,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    tmp_path: Path,
) -> None:
    """README "Exactly one send": a send whose outcome nobody can know (Meta took it, no status ever
    came) is resent after the grace period, with a warning. A template takes that path exactly as a
    text does: the same attempts, the same duplicate, the same object sent twice."""
    inbox, cid = open_conversation(client, db, settings, fake_graph, tmp_path)
    if kind == "text":
        db.execute("UPDATE conversations SET last_inbound_at = now() WHERE id = %s", [cid])
    fake_graph.script.append(Behaviour(hang=8.0))
    doomed = WorkerProcess(settings.model_copy(update={"send_read_timeout": 60.0}), tmp_path / "doomed.log")
    doomed.wait_ready()
    if kind == "text":
        answer = inbox.post(
            f"/api/inbox/conversations/{cid}/messages", {"body": "your order is ready", "client_key": "crash-unknown"}
        )
        assert answer.status_code == 202, answer.text
        queued = answer.json()["message"]
    else:
        queued = send_template(inbox, cid, "crash-unknown")["message"]
    key = message(db, queued["id"])["idempotency_key"]
    wait_until(lambda: template_sends(fake_graph, key), what="Meta accepting the message")
    kill(doomed)

    survivor = WorkerProcess(settings, tmp_path / "survivor.log")
    survivor.wait_ready()
    try:
        settle(settings.require_database_url(), web.url)
    finally:
        survivor.stop()
    sends = template_sends(fake_graph, key)
    sent = message(db, queued["id"])
    assert len(sends) == 2 and sends[0].body == sends[1].body and sends[0].body["type"] == kind
    assert (sent["status"], sent["wa_message_id"], sent["send_attempts"]) == ("sent", sends[1].wa_message_id, 2)
    assert "At-least-once" in survivor.output()


def test_a_resubmitted_form_and_two_racing_workers_send_the_template_once(
    client: httpx.Client,
    web: WebServer,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    tmp_path: Path,
) -> None:
    # Long timeouts: here nothing is meant to be presumed dead but the worker we freeze.
    settings = settings.model_copy(update={"send_read_timeout": 10.0})
    inbox, cid = open_conversation(client, db, settings, fake_graph, tmp_path)
    first = send_template(inbox, cid, "resubmitted-twice")
    again = send_template(inbox, cid, "resubmitted-twice")
    assert (first["duplicate"], again["duplicate"], again["message"]["id"]) == (False, True, first["message"]["id"])

    # Worker 1 calls Meta and freezes (SIGSTOP) before it hears back; the sweep judges it dead and
    # hands its job to worker 2, which must not send what worker 1 may be sending.
    fake_graph.script.append(Behaviour(hang=1.0))
    frozen = WorkerProcess(settings, tmp_path / "frozen.log")
    frozen.wait_ready()
    key = message(db, first["message"]["id"])["idempotency_key"]
    wait_until(lambda: template_sends(fake_graph, key), what="worker 1 sending")
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    racer = WorkerProcess(settings, tmp_path / "racer.log")
    try:
        racer.wait_ready(listeners=2)

        def raced() -> bool:
            client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"})
            return "another attempt is in flight" in racer.output()

        wait_until(raced, timeout=30, what="worker 2 taking the job of the frozen worker")
        os.kill(frozen.proc.pid, signal.SIGCONT)
        settle(settings.require_database_url(), web.url)

        # Both workers alive now, and each form posted twice at the same moment.
        keys = [f"double-post-{i}" for i in range(5)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(lambda k: send_template(inbox, cid, k), [*keys, *keys]))
        for i in range(5):
            pair = (answers[i], answers[i + 5])
            assert pair[0]["message"]["id"] == pair[1]["message"]["id"]
            assert sorted(a["duplicate"] for a in pair) == [False, True]
        settle(settings.require_database_url(), web.url)
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
        frozen.stop()
        racer.stop()
    sent = message(db, first["message"]["id"])
    sends = template_sends(fake_graph, key)
    assert len(sends) == 1 and len(template_sends(fake_graph, key, accepted=False)) == 1
    assert (sent["status"], sent["wa_message_id"], sent["send_attempts"]) == ("sent", sends[0].wa_message_id, 1)
    # worker 1's job was taken back from it (by a sweep: the cron's or a worker's periodic one)
    retried = db.execute(
        "SELECT count(*) AS n FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id"
        " WHERE j.task_name = 'send_operator_message' AND e.type = 'deferred_for_retry'"
    ).fetchone()
    assert retried is not None and retried["n"] >= 1
    for client_key in keys:
        row = db.execute("SELECT * FROM messages WHERE idempotency_key = %s", [f"operator:{client_key}"]).fetchone()
        assert row is not None and row["status"] == "sent"
        assert len(template_sends(fake_graph, row["idempotency_key"], accepted=False)) == 1


@pytest.mark.parametrize(
    ("meta_status", "code", "title"),
    [("PAUSED", 132015, "Template is Paused"), ("DISABLED", 132016, "Template is Disabled")],
)
def test_a_template_meta_paused_since_the_sync_fails_with_its_error_once_and_stops_being_offered(
    meta_status: str,
    code: int,
    title: str,
    client: httpx.Client,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker,
    tmp_path: Path,
) -> None:
    inbox, cid = open_conversation(client, db, settings, fake_graph, tmp_path)
    start_worker()
    fake_graph.set_template_status("order_ready", meta_status)  # at Meta; our row still says APPROVED
    assert db.execute("SELECT status FROM message_templates WHERE name = 'order_ready'").fetchone() == {
        "status": "APPROVED"
    }
    queued = send_template(inbox, cid, "paused-template")["message"]
    failed = wait_for(db, "SELECT * FROM messages WHERE id = %s AND status = 'failed'", [queued["id"]])
    settled(db)

    # Meta's error, once: permanent, never retried
    assert failed["send_attempts"] == 1 and failed["error"][0]["code"] == code
    assert len(template_sends(fake_graph, failed["idempotency_key"], accepted=False)) == 1
    shown = inbox.get(f"/api/inbox/conversations/{cid}").json()["messages"][-1]
    assert (shown["id"], shown["status"], shown["error"]["code"]) == (queued["id"], "failed", code)
    assert title in shown["error"]["message"]
    page = client.get(f"/inbox/conversations/{cid}")
    assert page.status_code == 200 and f"{code} (#{code}) {title}" in page.text
    notification = wait_for(
        db, "SELECT * FROM notifications WHERE kind = 'send_failed' AND message_id = %s", [queued["id"]]
    )
    assert f"error {code}" in notification["body"] and title in notification["body"]

    # the row says what Meta said, in the same transaction: the template is no longer offered
    row = db.execute("SELECT status FROM message_templates WHERE name = 'order_ready'").fetchone()
    assert row == {"status": meta_status}
    again = inbox.post(f"/api/inbox/conversations/{cid}/template", {**ORDER_READY, "client_key": "paused-again"})
    assert again.status_code == 409 and again.json()["code"] == "TEMPLATE_UNAVAILABLE"
    assert db.execute("SELECT status FROM message_templates WHERE name = 'promo'").fetchone() == {"status": "APPROVED"}

    # until Meta approves it again and the next sync says so
    fake_graph.set_template_status("order_ready", "APPROVED")
    assert sync(settings).returncode == 0
    resent = send_template(inbox, cid, "approved-again")["message"]
    wait_for(db, "SELECT 1 FROM messages WHERE id = %s AND status = 'sent'", [resent["id"]])


def test_template_errors_are_permanent_whatever_the_http_status() -> None:
    for code in (132000, 132001, 132005, 132007, 132012, 132015, 132016):
        for status in (400, 500):
            response = httpx.Response(status, json=error_body(code, "Template is Paused"))
            failure = classify_response(response)
            assert (failure.kind, failure.code) == ("permanent", code), (code, status)
    assert classify_response(httpx.Response(500, json=error_body(131000))).kind == "retryable"


def test_the_fake_graph_api_refuses_templates_as_meta_does() -> None:
    fake = FakeGraph()
    assert fake.template_refusal({"name": "anything", "language": {"code": "en_US"}}) is None  # none listed
    fake.set_templates([template("order_ready"), template("draft", status="PENDING"), template("bye", body="Bye")])

    def refusal(name: str, parameters: int, language: str = "en_US") -> int | None:
        body = [{"type": "body", "parameters": [{"type": "text", "text": "x"}] * parameters}] if parameters else []
        content = {"name": name, "language": {"code": language}, "components": body}
        found = fake.template_refusal(content)  # its status first, then its parameters, as the endpoint checks
        if found:
            return found[0]
        return 132000 if fake.template_mismatch({"type": "template", "template": content}) else None

    assert refusal("order_ready", 2) is None and refusal("bye", 0) is None
    assert refusal("order_ready", 1) == refusal("order_ready", 3) == refusal("bye", 1) == 132000
    assert refusal("order_ready", 2, "pt_BR") == refusal("draft", 2) == refusal("nope", 0) == 132001
    fake.set_template_status("order_ready", "PAUSED")
    assert refusal("order_ready", 2) == 132015
    fake.set_template_status("order_ready", "DISABLED")
    assert refusal("order_ready", 2) == 132016


def test_a_template_sends_statuses_and_price_show_like_any_message(
    client: httpx.Client,
    db: psycopg.Connection,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker,
    tmp_path: Path,
) -> None:
    inbox, cid = open_conversation(client, db, settings, fake_graph, tmp_path)
    start_worker()
    fake_graph.auto_statuses = ("sent", "delivered", "read")  # each carrying our key; the first priced one
    sent = {}
    for name, category in (("promo", "marketing"), ("order_ready", "utility")):
        fake_graph.pricing = payloads.pricing(category, "regular", billable=True)
        queued = send_template(inbox, cid, f"priced-{name}", name=name)["message"]
        sent[category] = wait_for(
            db, "SELECT * FROM messages WHERE id = %s AND status = 'read' AND priced_at IS NOT NULL", [queued["id"]]
        )
    for category, row in sent.items():
        assert (row["type"], row["pricing_category"], row["pricing_type"], row["billable"]) == (
            "template",
            category,
            "regular",
            True,
        )
        statuses = db.execute(
            "SELECT status FROM message_statuses WHERE wa_message_id = %s ORDER BY status", [row["wa_message_id"]]
        ).fetchall()
        assert [s["status"] for s in statuses] == ["delivered", "read", "sent"]  # type: ignore[index]

    shown = {m["id"]: m for m in inbox.get(f"/api/inbox/conversations/{cid}").json()["messages"]}
    promo = shown[sent["marketing"]["id"]]
    assert promo["status"] == "read" and promo["pricing"] == {
        "category": "marketing",
        "type": "regular",
        "billable": True,
    }
    page = client.get(f"/inbox/conversations/{cid}").text
    assert "cost: marketing · regular · billable" in page and "cost: utility · regular · billable" in page
    costs = db.execute(
        "SELECT category, type, messages, billable FROM waypost_message_costs ORDER BY category"
    ).fetchall()
    assert costs == [
        {"category": "marketing", "type": "regular", "messages": 1, "billable": 1},
        {"category": "utility", "type": "regular", "messages": 1, "billable": 1},
    ]  # the AI's reply got no priced status: not counted
