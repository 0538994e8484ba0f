"""Automatic re-engagement (WAYPOST_REENGAGE_TEMPLATE): a reply that falls due after the 24-hour window
closed sends the configured template instead of being skipped, once, and the operators are told which
happened. Real PostgreSQL, real worker subprocesses, the fake Graph API and its templates."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from tests.conftest import post_webhook, settled, wait_for, waypost_env
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.devtools.fake_templates import template
from waypost.devtools.net import free_port
from waypost.settings import ConfigurationError, Settings
from worker.reengage_config import reengagement

WABA = "102290129340398"
CONTACT = "16505551234"
WINDOW_CLOSED = "outside the 24-hour customer service window"
FOLLOW_UP = template("follow_up", body="Hi {{1}}, {{2}} is still here to help: reply to carry on.")
ON = {"WAYPOST_REENGAGE_TEMPLATE": "follow_up:en_US", "WAYPOST_REENGAGE_PARAMETERS": "contact_name,text:Rosa's Bakery"}
SENT_TEMPLATE = {
    "name": "follow_up",
    "language": {"code": "en_US"},
    "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "Rosa's Bakery"}]}
    ],
}


def sync(settings: Settings, fake_graph: FakeGraph, templates: list[dict]) -> None:
    """`waypost templates sync` of these templates from the fake Graph API."""
    fake_graph.set_templates(templates)
    done = subprocess.run(
        [sys.executable, "-m", "waypost.cli", "templates", "sync"],
        env=waypost_env(settings.model_copy(update={"whatsapp_business_account_id": WABA})),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def deliver_late(client: httpx.Client, text: str, wa_id: str = CONTACT, hours: float = 25) -> dict:
    """A message the contact sent `hours` ago: its reply is due after the window has closed."""
    message = payloads.text_message(text, wa_id=wa_id, timestamp=int(time.time() - hours * 3600))
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": wa_id}]
    body = payloads.dumps(payloads.inbound(message, contacts=contacts))
    assert post_webhook(client, body).status_code == 200
    return message


def job_of(db: psycopg.Connection, wamid: str, *statuses: str) -> dict:
    return wait_for(
        db,
        "SELECT j.* FROM outbound_jobs j JOIN messages m ON m.id = j.inbound_message_id"
        " WHERE m.wa_message_id = %s AND j.status = ANY(%s)",
        [wamid, list(statuses)],
        timeout=30,
    )


def templates_sent(fake_graph: FakeGraph) -> list[dict]:
    return [r.body for r in fake_graph.accepted() if r.body.get("type") == "template"]


def notifications(db: psycopg.Connection) -> list[dict]:
    return db.execute("SELECT kind, body FROM notifications ORDER BY id").fetchall()


def test_off_by_default_a_late_reply_is_skipped_as_before(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    sync(settings, fake_graph, [FOLLOW_UP])
    start_worker()
    late = deliver_late(client, "are you open tomorrow?")
    job = job_of(db, late["id"], "skipped")
    assert job["skip_reason"] == WINDOW_CLOSED
    assert [n["kind"] for n in notifications(db)] == ["window_closed"]
    settled(db)
    assert fake_graph.requests == []
    assert db.execute("SELECT count(*) AS n FROM messages WHERE direction = 'outbound'").fetchone() == {"n": 0}


def test_the_template_goes_once_instead_of_the_ai_answer_and_the_operators_are_told(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker,
) -> None:
    sync(settings, fake_graph, [FOLLOW_UP])
    port = free_port()
    worker = start_worker(WAYPOST_WORKER_METRICS_PORT=str(port), **ON)
    late = deliver_late(client, "are you open tomorrow?")
    job = job_of(db, late["id"], "done")
    settled(db)

    [sent] = fake_graph.accepted()  # the template, and no AI answer
    assert sent.body["type"] == "template" and sent.body["template"] == SENT_TEMPLATE
    assert sent.body["to"] == CONTACT and "context" not in sent.body
    assert sent.body["biz_opaque_callback_data"] == f"reply:{late['id']}"
    [message] = db.execute("SELECT * FROM messages WHERE direction = 'outbound'").fetchall()
    assert (message["author"], message["type"], message["status"]) == ("ai", "template", "sent")
    assert message["idempotency_key"] == f"reply:{late['id']}" and message["payload"] == SENT_TEMPLATE
    assert message["body"] == "[re-engagement template follow_up] Sheena | Rosa's Bakery"
    assert notifications(db) == [
        {
            "kind": "reengaged",
            "body": "A message could not be answered inside the 24-hour window: the re-engagement template "
            "follow_up (en_US) was sent instead of the AI's answer.",
        }
    ]
    prefix = f"request_id={job['request_id']} job_id={job['procrastinate_job_id']}"
    assert any(prefix in line and " re-engagement elapsed_ms=" in line for line in worker.output().splitlines())
    counted = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'waypost_reengagements_total{outcome="sent"} 1.0' in counted

    # the inbox says why this AI message is a template
    create_operator(database_url)
    page = Inbox(client).get(f"/inbox/conversations/{conversation_id(db)}").text
    assert "data-reengagement" in page and "the 24-hour window had closed" in page

    # Meta delivering the message again changes nothing
    deliver_again = payloads.dumps(payloads.inbound(late, contacts=[{"profile": {"name": "Sheena"}, "wa_id": CONTACT}]))
    assert post_webhook(client, deliver_again).status_code == 200
    settled(db)
    assert len(templates_sent(fake_graph)) == 1 and len(notifications(db)) == 1


def test_a_failed_attempt_and_a_killed_worker_still_send_one_template(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    sync(settings, fake_graph, [FOLLOW_UP])
    fake_graph.script.append(Behaviour(status=503))  # the first send fails: a retry is scheduled
    first = start_worker(WAYPOST_RETRY_BASE_SECONDS="3", **ON)
    late = deliver_late(client, "hello?")
    wait_for(db, "SELECT 1 FROM messages WHERE type = 'template' AND error IS NOT NULL", timeout=30)
    wait_for(  # the retry is scheduled
        db,
        "SELECT 1 FROM outbound_jobs j JOIN procrastinate_jobs q ON q.id = j.procrastinate_job_id"
        " WHERE q.status = 'todo' AND q.attempts = 1",
        timeout=30,
    )
    first.proc.kill()  # the worker dies while the template waits for its retry
    first.proc.wait(timeout=15)
    assert [r.status for r in fake_graph.requests] == [503]  # killed before its retry
    start_worker(**ON)
    job_of(db, late["id"], "done")
    settled(db)
    assert [body["template"] for body in templates_sent(fake_graph)] == [SENT_TEMPLATE]
    [message] = db.execute("SELECT * FROM messages WHERE direction = 'outbound'").fetchall()
    assert (message["type"], message["status"], message["send_attempts"]) == ("template", "sent", 2)
    assert [n["kind"] for n in notifications(db)] == ["reengaged"]
    assert [r.status for r in fake_graph.requests] == [503, 200]


def test_a_template_not_approved_missing_or_mismatched_is_not_sent_and_the_operator_is_told_why(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    sync(settings, fake_graph, [{**FOLLOW_UP, "status": "PAUSED"}])
    start_worker(**ON)
    paused = deliver_late(client, "one", wa_id="16505550001")
    assert job_of(db, paused["id"], "skipped")["skip_reason"] == (
        f"{WINDOW_CLOSED}; re-engagement template follow_up (en_US) not sent: its status is PAUSED, not APPROVED"
    )
    db.execute("UPDATE message_templates SET status = 'APPROVED', body_params = 3")
    mismatched = deliver_late(client, "two", wa_id="16505550002")
    assert job_of(db, mismatched["id"], "skipped")["skip_reason"].endswith(
        "not sent: its parameters do not match WAYPOST_REENGAGE_PARAMETERS (its body takes 3 parameter(s), "
        "2 configured; header parameters 0, button parameters 0)"
    )
    db.execute("DELETE FROM message_templates")
    missing = deliver_late(client, "three", wa_id="16505550003")
    assert job_of(db, missing["id"], "skipped")["skip_reason"].endswith(
        "not sent: it is not among the stored templates (run `waypost templates sync`)"
    )
    settled(db)
    assert fake_graph.requests == []
    told = notifications(db)
    assert [n["kind"] for n in told] == ["window_closed"] * 3
    assert "re-engagement template follow_up (en_US) was not sent: its status is PAUSED" in told[0]["body"]

    # the inbox shows the reason on the message left for an operator
    create_operator(settings.require_database_url())
    inbox = Inbox(client)
    cid = conversation_id(db, "16505550001")
    [shown] = inbox.get(f"/api/inbox/conversations/{cid}").json()["messages"]
    assert shown["ai_job"]["skip_reason"].endswith("not sent: its status is PAUSED, not APPROVED")


def test_a_marketing_template_never_reaches_an_opted_out_contact(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    sync(settings, fake_graph, [{**FOLLOW_UP, "category": "MARKETING"}])
    opted_out, other = "16505550011", "16505550012"
    assert post_webhook(client, payloads.dumps(payloads.user_preferences("stop", wa_id=opted_out))).status_code == 200
    start_worker(**ON)
    refused = deliver_late(client, "hi", wa_id=opted_out)
    assert job_of(db, refused["id"], "skipped")["skip_reason"].endswith(
        "not sent: it is a MARKETING template and the contact opted out of marketing (or is blocked)"
    )
    allowed = deliver_late(client, "hi", wa_id=other)
    job_of(db, allowed["id"], "done")
    settled(db)
    assert [body["to"] for body in templates_sent(fake_graph)] == [other]


def test_a_second_late_reply_in_the_same_closed_window_sends_no_second_template(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    sync(settings, fake_graph, [FOLLOW_UP])
    first = deliver_late(client, "first question", hours=26)
    second = deliver_late(client, "second question", hours=25)
    start_worker(**ON)
    job_of(db, first["id"], "done")
    assert job_of(db, second["id"], "skipped")["skip_reason"] == (
        f"{WINDOW_CLOSED}; re-engagement template follow_up (en_US) not sent: a template was already sent since "
        "the contact last wrote (at most one per closed window)"
    )
    settled(db)
    assert len(templates_sent(fake_graph)) == 1
    assert [n["kind"] for n in notifications(db)] == ["reengaged", "window_closed"]

    # the contact writes again: the window is open, the AI answers as usual
    fresh = payloads.dumps(payloads.inbound(payloads.text_message("what are your opening hours?", wa_id=CONTACT)))
    assert post_webhook(client, fresh).status_code == 200
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND type = 'text' AND status = 'sent'", timeout=30)
    assert len(templates_sent(fake_graph)) == 1


@pytest.mark.parametrize(
    ("template_setting", "parameters", "error"),
    [
        ("Follow Up", "", "WAYPOST_REENGAGE_TEMPLATE must be name:language"),
        ("follow_up", "", "WAYPOST_REENGAGE_TEMPLATE must be name:language"),
        ("follow_up:english", "", "WAYPOST_REENGAGE_TEMPLATE must be name:language"),
        ("follow_up:en_US", "contact_name,order_id", "'order_id' is neither contact_name nor text:FIXED TEXT"),
        ("follow_up:en_US", "text:", "'text:' is neither contact_name nor text:FIXED TEXT"),
        ("", "contact_name", "WAYPOST_REENGAGE_PARAMETERS is set but WAYPOST_REENGAGE_TEMPLATE is empty"),
    ],
)
def test_a_setting_that_cannot_work_is_refused(template_setting: str, parameters: str, error: str) -> None:
    settings = Settings(reengage_template=template_setting, reengage_parameters=parameters)
    with pytest.raises(ConfigurationError, match=error.replace("(", r"\(")):
        reengagement(settings)


def test_the_settings_parse_and_empty_is_off() -> None:
    assert reengagement(Settings()) is None
    config = reengagement(Settings(reengage_template=" follow_up:pt_BR ", reengage_parameters="contact_name, text:Ana"))
    assert config is not None
    assert (config.name, config.language, config.sources) == ("follow_up", "pt_BR", ("contact_name", "text:Ana"))


def test_the_worker_refuses_to_start_with_a_bad_setting(settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "waypost.cli", "worker"],
        env=waypost_env(settings, WAYPOST_REENGAGE_TEMPLATE="follow up"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "configuration error: WAYPOST_REENGAGE_TEMPLATE must be name:language" in done.stderr


def test_an_operators_template_since_the_contact_last_wrote_counts_as_the_one(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker,
) -> None:
    sync(settings, fake_graph, [FOLLOW_UP])
    start_worker(**ON)
    fresh = payloads.dumps(payloads.inbound(payloads.text_message("hello", wa_id=CONTACT)))
    assert post_webhook(client, fresh).status_code == 200
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND status = 'sent'", timeout=30)
    # a day later the window has closed and an operator has sent a template...
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '25 hours'")
    create_operator(database_url)
    cid = conversation_id(db)
    request = {"name": "follow_up", "language": "en_US", "parameters": ["Sheena", "Rosa"]}
    assert Inbox(client).post(f"/api/inbox/conversations/{cid}/template", request).status_code == 202
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'operator' AND status = 'sent'", timeout=30)
    db.execute("UPDATE conversations SET ai_enabled = true")  # the operator hands back to the AI
    # ...when a message of the contact's from before then arrives late: no second template
    late = deliver_late(client, "are you there?", hours=26)
    assert job_of(db, late["id"], "skipped")["skip_reason"].endswith(
        "not sent: a template was already sent since the contact last wrote (at most one per closed window)"
    )
    settled(db)
    assert len(templates_sent(fake_graph)) == 1


def test_a_named_template_goes_with_its_parameter_names_and_an_unsendable_name_is_not_sent(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, fake_graph: FakeGraph, start_worker
) -> None:
    named = template("follow_up", body="Hi {{first_name}}, {{shop}} is still here to help.")
    sync(settings, fake_graph, [named])
    start_worker(**ON)
    late = deliver_late(client, "are you open tomorrow?")
    job_of(db, late["id"], "done")
    settled(db)
    [sent] = templates_sent(fake_graph)
    assert sent["template"]["components"] == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Sheena", "parameter_name": "first_name"},
                {"type": "text", "text": "Rosa's Bakery", "parameter_name": "shop"},
            ],
        }
    ]

    # a contact whose profile name has a tab: Meta would refuse the parameter, so nothing is sent
    message = payloads.text_message("hello?", wa_id="16505550077", timestamp=int(time.time() - 25 * 3600))
    contacts = [{"profile": {"name": "Ana\tMaria"}, "wa_id": "16505550077"}]
    assert post_webhook(client, payloads.dumps(payloads.inbound(message, contacts=contacts))).status_code == 200
    job = job_of(db, message["id"], "skipped")
    assert "template follow_up (en_US) not sent: parameter 1 has a line break, a tab" in job["skip_reason"]
    settled(db)
    assert len(templates_sent(fake_graph)) == 1
