"""Templates drafted in the inbox: checked against what Meta refuses before anything is sent, stored,
submitted by the worker to the fake Graph API's create-template endpoint exactly once (resubmitted
forms, lost answers and retries included), and then usable once a status webhook approves them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import CRON_SECRET, WebServer, post_webhook, wait_for, wait_until
from tests.inbox_client import PASSWORD, Inbox, conversation_id, create_operator, csrf_of
from waypost.devtools import payloads
from waypost.devtools.browser import CHROMIUM_FLAGS, chromium_path
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.devtools.fake_templates import template
from waypost.settings import Settings
from waypost.template_drafts import TemplateDraft

WABA = "102290129340398"
CONTACT = "16505551234"
URL = "/api/inbox/templates"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with a WhatsApp Business Account to submit templates to."""
    return settings.model_copy(update={"whatsapp_business_account_id": WABA})


def draft(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "order_ready",
        "language": "en_US",
        "category": "UTILITY",
        "header": "Order {{1}}",
        "header_example": "A-17",
        "body": "Hello {{1}}, your order {{2}} is ready for pickup today.",
        "body_examples": ["Sheena", "A-17"],
        "footer": "Lucky Shrub",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Thanks"},
            {"type": "URL", "text": "Track it", "url": "https://example.com/o/{{1}}", "example": "A-17"},
        ],
    }
    body.update(changes)
    return body


def draft_row(db: psycopg.Connection, name: str = "order_ready") -> dict[str, Any]:
    row = db.execute("SELECT * FROM template_drafts WHERE name = %s ORDER BY id DESC LIMIT 1", [name]).fetchone()
    assert row is not None
    return dict(row)


def template_row(db: psycopg.Connection, name: str = "order_ready") -> dict[str, Any] | None:
    row = db.execute("SELECT * FROM message_templates WHERE name = %s AND language = 'en_US'", [name]).fetchone()
    return dict(row) if row else None


# What is refused before anything reaches Meta (no database, no server)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"name": "Order Ready"}, "name", "lowercase letters, digits and underscores"),
        ({"name": "x" * 513}, "name", "at most 512"),
        ({"language": "english"}, "language", "en_US"),
        ({"category": "AUTHENTICATION"}, "category", "WhatsApp Manager"),
        (
            {"body": "Hello {{1}}, order {{2}} is ready now.", "body_examples": ["Sheena"]},
            "body_examples",
            "one example",
        ),
        ({"body": "Hello {{2}}, order {{1}} is ready now."}, "body", "numbered from {{1}}"),
        ({"body": "Hello {{ 1 }}, order is ready now.", "body_examples": ["x"]}, "body", "digits only"),
        ({"body": "{{1}}, your order {{2}} is ready.", "body_examples": ["a", "b"]}, "body", "start or end"),
        ({"body": "x" * 1025, "body_examples": []}, "body", "at most 1024"),
        ({"header": "Order {{1}} {{2}}"}, "header", "at most 1 parameter"),
        ({"header": "Order {{1}}", "header_example": None}, "header_example", "example value"),
        ({"header": "H" * 61, "header_example": None}, "header", "at most 60"),
        ({"footer": "F" * 61}, "footer", "at most 60"),
        ({"footer": "Hi {{1}}"}, "footer", "no parameters"),
        ({"buttons": [{"type": "QUICK_REPLY", "text": "T" * 26}]}, "buttons.0", "at most 25"),
        ({"buttons": [{"type": "QUICK_REPLY", "text": f"q{i}"} for i in range(11)]}, "buttons", "at most 10"),
        (
            {"buttons": [{"type": "URL", "text": f"u{i}", "url": "https://example.com"} for i in range(3)]},
            "buttons",
            "at most 2 URL",
        ),
        (
            {
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "a"},
                    {"type": "URL", "text": "b", "url": "https://example.com"},
                    {"type": "QUICK_REPLY", "text": "c"},
                ]
            },
            "buttons",
            "together",
        ),
        ({"buttons": [{"type": "URL", "text": "Go", "url": "https://e.com/{{1}}"}]}, "buttons.0", "example value"),
        (
            {"buttons": [{"type": "URL", "text": "Go", "url": "https://e.com/{{1}}/x", "example": "a"}]},
            "buttons.0",
            "end",
        ),
        ({"buttons": [{"type": "URL", "text": "Go", "url": "javascript:alert(1)"}]}, "buttons.0", "http(s)"),
        ({"buttons": [{"type": "PHONE_NUMBER", "text": "Call", "phone_number": "call us"}]}, "buttons.0", "digits"),
    ],
)
def test_what_meta_would_refuse_is_named_by_field(changes: dict[str, Any], field: str, words: str) -> None:
    problems = TemplateDraft.model_validate(draft(**changes)).problems()
    assert field in problems, problems
    assert words in problems[field]


def test_a_good_draft_becomes_metas_create_body() -> None:
    checked = TemplateDraft.model_validate(draft(body="Hello {{1}}, your order {{2}} is ready, {{1}}!\x00"))
    assert checked.problems() == {}
    assert checked.graph_body() == {
        "name": "order_ready",
        "language": "en_US",
        "category": "UTILITY",
        "parameter_format": "POSITIONAL",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["A-17"]}},
            {
                "type": "BODY",
                "text": "Hello {{1}}, your order {{2}} is ready, {{1}}!\ufffd",
                "example": {"body_text": [["Sheena", "A-17"]]},
            },
            {"type": "FOOTER", "text": "Lucky Shrub"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Thanks"},
                    {"type": "URL", "text": "Track it", "url": "https://example.com/o/{{1}}", "example": ["A-17"]},
                ],
            },
        ],
    }


# Through the API, the worker and the fake Graph API


def open_conversation(client: httpx.Client, db: psycopg.Connection, database_url: str) -> tuple[Inbox, int]:
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": CONTACT}]
    body = payloads.dumps(payloads.inbound(payloads.text_message("hello"), contacts=contacts))
    assert post_webhook(client, body).status_code == 200
    create_operator(database_url)
    return Inbox(client), conversation_id(db)


def test_a_draft_is_submitted_once_and_can_be_sent_once_approved(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, cid = open_conversation(client, db, database_url)
    request = draft(client_key="draft-0001")
    answers = [inbox.post(URL, request) for _ in range(2)]  # a resubmitted form: one draft, one submission
    assert [a.status_code for a in answers] == [202, 202], answers[0].text
    assert [a.json()["duplicate"] for a in answers] == [False, True]
    assert answers[0].json()["draft"]["shown_status"] == "SUBMITTING"
    assert db.execute("SELECT count(*) AS n FROM template_drafts").fetchone()["n"] == 1  # type: ignore[index]

    start_worker()
    row = wait_for(db, "SELECT * FROM template_drafts WHERE status = 'submitted'")
    created = fake_graph.created_templates()
    assert len(fake_graph.template_creates) == 1 and len(created) == 1
    sent = created[0]["body"]
    assert sent["name"] == "order_ready" and sent["components"][1]["example"] == {"body_text": [["Sheena", "A-17"]]}
    stored = template_row(db)
    assert stored is not None
    meta_id = fake_graph.templates[-1]["id"]
    assert (stored["status"], stored["template_id"], row["template_id"], row["meta_status"]) == (
        "PENDING",
        meta_id,
        meta_id,
        "PENDING",
    )
    assert (stored["waba_id"], stored["category"], stored["body_params"], stored["button_params"]) == (
        WABA,
        "UTILITY",
        2,
        1,
    )
    shown = inbox.get(f"{URL}/drafts/{row['id']}").json()["draft"]
    assert (shown["shown_status"], shown["operator"]) == ("PENDING", "op@example.com")

    # pending: not sendable yet; Meta approves it (the status webhook): now it is
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id = %s", [cid])
    send = {
        "name": "order_ready",
        "language": "en_US",
        "parameters": ["Sheena", "A-17"],
        "header_parameters": ["A-17"],
        "button_parameters": [{"index": 1, "text": "A-17"}],
    }
    refused = inbox.post(f"/api/inbox/conversations/{cid}/template", send)
    assert refused.status_code == 409 and refused.json()["code"] == "TEMPLATE_UNAVAILABLE"
    approved = payloads.template_status_update(
        "APPROVED", "order_ready", template_id=int(meta_id), timestamp=int(time.time()) + 1, waba_id=WABA
    )
    fake_graph.set_template_status("order_ready", "APPROVED")  # Meta's own state, which its send checks
    assert post_webhook(client, payloads.dumps(approved)).status_code == 200
    assert template_row(db)["status"] == "APPROVED"  # type: ignore[index]
    assert inbox.get(URL).json()["drafts"][0]["shown_status"] == "APPROVED"
    answer = inbox.post(f"/api/inbox/conversations/{cid}/template", send)
    assert answer.status_code == 202, answer.text
    wait_for(db, "SELECT 1 FROM messages WHERE type = 'template' AND status = 'sent'")
    assert len(fake_graph.created_templates()) == 1  # and the worker never submitted it again

    # the same name and language again: refused before anything is stored
    again = inbox.post(URL, draft(client_key="draft-0002"))
    assert again.status_code == 409 and again.json()["code"] == "TEMPLATE_EXISTS"
    assert "exists already (status APPROVED)" in again.json()["error"]


def test_a_form_sent_twice_at_once_answers_its_one_draft(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph
) -> None:
    """A double click sends the form twice. The second request can look its key up before the first
    commits, and find the first's draft by its name just after: it is the same draft, not a taken name."""
    inbox, _ = open_conversation(client, db, database_url)
    first = draft(client_key="draft-twice-01")
    operator = db.execute("SELECT id FROM operators").fetchone()["id"]  # type: ignore[index]
    with psycopg.connect(database_url) as holder, ThreadPoolExecutor(1) as pool:
        # the first request, caught between storing its draft and committing it
        holder.execute("LOCK TABLE message_templates IN ACCESS EXCLUSIVE MODE")
        holder.execute(
            "INSERT INTO template_drafts (client_key, operator_id, waba_id, name, language, category, request,"
            " request_id) VALUES (%s, %s, %s, 'order_ready', 'en_US', 'UTILITY', '{}', 'first')",
            [first["client_key"], operator, WABA],
        )
        second = pool.submit(inbox.post, URL, first)
        # the second has missed the uncommitted key and waits to read the templates' names
        wait_for(
            db,
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE '%%message_templates%%'",
        )
        holder.commit()
        answer = second.result(timeout=20)
    assert answer.status_code == 202, answer.text
    assert answer.json()["duplicate"] is True
    assert db.execute("SELECT count(*) AS n FROM template_drafts").fetchone()["n"] == 1  # type: ignore[index]
    # another key for the same name and language, while that draft is on its way: refused
    other = inbox.post(URL, draft(client_key="draft-twice-02"))
    assert other.status_code == 409 and "being submitted already" in other.json()["error"]


def test_a_draft_whose_submit_job_was_lost_is_queued_again_by_the_sweep(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, _ = open_conversation(client, db, database_url)
    assert inbox.post(URL, draft(client_key="draft-lost-01")).status_code == 202
    db.execute("DELETE FROM procrastinate_jobs WHERE task_name = 'submit_template'")  # the job is lost
    db.execute("UPDATE template_drafts SET created_at = now() - interval '1 minute'")
    sweep = {"Authorization": f"Bearer {CRON_SECRET}"}
    assert client.post("/api/cron/run-outbound-jobs", headers=sweep).json()["template_drafts_redeferred"] == 1
    assert client.post("/api/cron/run-outbound-jobs", headers=sweep).json()["template_drafts_redeferred"] == 0
    start_worker()
    wait_for(db, "SELECT 1 FROM template_drafts WHERE status = 'submitted'")
    assert len(fake_graph.created_templates()) == 1


def test_metas_refusal_is_shown_with_its_message_and_notified(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    start_worker()
    # passes Waypost's checks; Meta (the fake) finds too many parameters for so few words
    dense = draft(
        name="dense",
        body="Hi {{1}} {{2}} {{3}} ok",
        body_examples=["a", "b", "c"],
        header=None,
        header_example=None,
        buttons=[],
    )
    assert inbox.post(URL, dense).status_code == 202
    row = wait_for(db, "SELECT * FROM template_drafts WHERE status = 'refused'")
    assert row["error"]["error_subcode"] == 2388293 and row["attempts"] == 1
    assert "too many variable parameters" in row["error"]["error_user_msg"]
    assert len(fake_graph.template_creates) == 1 and fake_graph.created_templates() == []
    assert template_row(db, "dense") is None
    note = db.execute("SELECT body FROM notifications WHERE kind = 'template_refused'").fetchone()
    assert note is not None and "dense (en_US) was not submitted" in note["body"]  # type: ignore[index]
    notifications = client.get("/inbox/notifications").text
    assert "dense (en_US) was not submitted" in notifications and 'href="/inbox/templates"' in notifications
    shown = inbox.get(URL).json()["drafts"][0]
    assert shown["shown_status"] == "NOT SUBMITTED" and "too many variable parameters" in shown["error_text"]
    page = client.get("/inbox/templates")
    assert page.status_code == 200 and "too many variable parameters" in page.text and "NOT SUBMITTED" in page.text

    # a name Meta has already (not synced here): refused on the first attempt, and now listed
    fake_graph.set_templates([*fake_graph.templates, template("welcome", body="Hi {{1}}, welcome aboard.")])
    taken = draft(name="welcome", body="Hello {{1}}, welcome to the shop.", body_examples=["Sheena"], buttons=[])
    assert inbox.post(URL, taken).status_code == 202
    row = wait_for(db, "SELECT * FROM template_drafts WHERE name = 'welcome' AND status = 'refused'")
    assert row["error"]["error_subcode"] == 2388024
    assert "Meta has a template named welcome in en_US already (its status: APPROVED)" in row["error"]["message"]
    assert template_row(db, "welcome")["status"] == "APPROVED"  # type: ignore[index]


def test_a_lost_answer_is_read_back_and_transient_failures_are_bounded(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    start_worker()
    # Meta creates the template but the answer is lost (503): the retry is told it exists, reads it
    fake_graph.template_create_script.append(Behaviour(status=503, accept=True))
    assert inbox.post(URL, draft()).status_code == 202
    row = wait_for(db, "SELECT * FROM template_drafts WHERE status = 'submitted'", timeout=30)
    assert row["attempts"] == 2 and len(fake_graph.created_templates()) == 1
    assert row["template_id"] == fake_graph.templates[-1]["id"]
    assert template_row(db)["status"] == "PENDING"  # type: ignore[index]

    # Meta unreachable every time: given up after MAX_ATTEMPTS, with the reason, nothing created
    fake_graph.template_create_script.extend(Behaviour(status=503) for _ in range(5))
    assert inbox.post(URL, draft(name="never")).status_code == 202
    row = wait_for(db, "SELECT * FROM template_drafts WHERE name = 'never' AND status = 'refused'", timeout=60)
    assert row["attempts"] == 5 and "could not be reached after 5 attempts" in row["error"]["message"]
    assert [r["body"]["name"] for r in fake_graph.template_creates].count("never") == 5
    assert template_row(db, "never") is None


def test_an_approval_that_beats_metas_answer_is_kept_and_later_events_apply(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    start_worker()
    fake_graph.template_create_script.append(Behaviour(hang=1.2))  # created at once, answered 1.2 s later
    assert inbox.post(URL, draft()).status_code == 202
    wait_until(lambda: fake_graph.created_templates(), what="the template created at the fake")
    meta_id = fake_graph.templates[-1]["id"]
    approved = payloads.template_status_update(
        "APPROVED", "order_ready", template_id=int(meta_id), timestamp=int(time.time()), waba_id=WABA
    )
    fake_graph.set_template_status("order_ready", "APPROVED")  # Meta lists it so too: a sync agrees
    assert post_webhook(client, payloads.dumps(approved)).status_code == 200  # before the worker records
    row = wait_for(db, "SELECT * FROM template_drafts WHERE status = 'submitted'")
    assert row["meta_status"] == "PENDING"  # Meta's answer said PENDING; the newer webhook wins
    stored = template_row(db)
    assert stored is not None and (stored["status"], stored["template_id"]) == ("APPROVED", meta_id)
    assert stored["components"][1]["type"] == "BODY"  # the submitted components fill the webhook's row
    rejected = payloads.template_status_update(
        "REJECTED", "order_ready", reason="INVALID_FORMAT", timestamp=int(time.time()) + 2, waba_id=WABA
    )
    assert post_webhook(client, payloads.dumps(rejected)).status_code == 200
    assert (template_row(db)["status"], template_row(db)["rejected_reason"]) == ("REJECTED", "INVALID_FORMAT")  # type: ignore[index]
    assert inbox.get(URL).json()["drafts"][0]["rejected_reason"] == "INVALID_FORMAT"


def test_invalid_drafts_are_refused_before_anything_is_stored(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph
) -> None:
    create_operator(database_url)
    inbox = Inbox(client)
    bad = inbox.post(URL, draft(name="Bad Name", footer="F" * 61))
    assert bad.status_code == 422 and bad.json()["code"] == "TEMPLATE_DRAFT_INVALID"
    assert set(bad.json()["problems"]) == {"name", "footer"}
    wrong_type = inbox.post(URL, draft(category="PROMO"))
    assert wrong_type.status_code == 422 and "category" in wrong_type.json()["problems"]
    assert inbox.post(URL, draft(), csrf=None).status_code == 403  # CSRF, like every inbox action
    huge = inbox.client.post(URL, content=b"x" * 70_000, headers={"X-CSRF-Token": inbox.csrf})
    assert huge.status_code == 413
    # the form shows the problems by their fields, keeps what was typed
    token = csrf_of(client.get("/inbox/templates/new").text)
    form = {
        "csrf_token": token,
        "client_key": "form-0001",
        "name": "Order Ready",
        "language": "en_US",
        "category": "UTILITY",
        "body": "Hi {{1}}, it is ready.",
        "body_examples": "",
        "quick_replies": "T" * 30,
    }
    page = client.post("/inbox/templates/new", data=form)
    assert page.status_code == 422
    assert 'id="error-name"' in page.text and 'id="error-body_examples"' in page.text
    assert 'id="error-quick_replies"' in page.text and 'value="Order Ready"' in page.text
    assert db.execute("SELECT count(*) AS n FROM template_drafts").fetchone()["n"] == 0  # type: ignore[index]
    assert fake_graph.template_creates == []


def test_without_an_account_id_nothing_is_drafted(settings: Settings, client: httpx.Client, database_url: str) -> None:
    assert settings.whatsapp_business_account_id == WABA  # this module's; the next client has none
    create_operator(database_url)
    off = settings.model_copy(update={"whatsapp_business_account_id": None})
    with WebServer(off) as server, httpx.Client(base_url=server.url) as other:
        answer = Inbox(other).post(URL, draft())
    assert answer.status_code == 503 and answer.json()["code"] == "TEMPLATES_OFF"


# In the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, web: WebServer, database_url: str) -> Iterator[Page]:
    create_operator(database_url)
    context = browser.new_context(base_url=web.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/inbox/login")
    page.fill("input[name=email]", "op@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{web.url}/inbox")
    yield page
    context.close()


def test_an_operator_drafts_a_template_in_the_page_and_sees_its_status(
    page: Page, client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker, web: WebServer
) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.click("header nav >> text=Templates")
    expect(page).to_have_url(f"{web.url}/inbox/templates")
    page.click("#new-template")
    page.fill("input[name=name]", "Order Ready")  # refused: the page says why and keeps the rest
    page.fill("textarea[name=body]", "Hello {{1}}, your order {{2}} is ready.")
    page.fill("textarea[name=body_examples]", "Sheena")
    page.fill("input[name=footer]", "Lucky Shrub")
    page.click("#submit-template")
    expect(page.locator("#error-name")).to_contain_text("lowercase letters")
    expect(page.locator("#error-body_examples")).to_contain_text("one example value per parameter")
    expect(page.locator("input[name=footer]")).to_have_value("Lucky Shrub")

    page.fill("input[name=name]", "order_ready")
    page.fill("textarea[name=body_examples]", "Sheena\nA-17")
    page.fill("textarea[name=quick_replies]", "Thanks\nCall me")
    page.dblclick("#submit-template")  # a double click submits once
    expect(page).to_have_url(f"{web.url}/inbox/templates?draft=1")
    expect(page.locator("#draft-1 .template-status")).to_have_text("SUBMITTING")
    start_worker()
    wait_for(db, "SELECT 1 FROM template_drafts WHERE status = 'submitted'")
    page.reload()
    expect(page.locator("#draft-1 .template-status")).to_have_text("PENDING")
    approved = payloads.template_status_update("APPROVED", "order_ready", timestamp=int(time.time()) + 1, waba_id=WABA)
    assert post_webhook(client, payloads.dumps(approved)).status_code == 200
    page.reload()
    expect(page.locator("#draft-1 .template-status")).to_have_text("APPROVED")
    expect(page.locator('#template-list tr[data-name="order_ready"] .template-status')).to_have_text("APPROVED")
    assert db.execute("SELECT count(*) AS n FROM template_drafts").fetchone()["n"] == 1  # type: ignore[index]
    assert len(fake_graph.created_templates()) == 1
    buttons = fake_graph.created_templates()[0]["body"]["components"][-1]["buttons"]
    assert buttons == [{"type": "QUICK_REPLY", "text": "Thanks"}, {"type": "QUICK_REPLY", "text": "Call me"}]
    # nothing the CSP blocked, no script error (the refused form's own 422 is logged as a failed load)
    assert [e for e in errors if "status of 422" not in e] == []
