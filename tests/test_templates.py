"""Message templates: `waypost templates sync` reads every page of the account's templates from the
fake Graph API, and message_template_status_update webhooks keep them current."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import psycopg
from pydantic import SecretStr

from tests.conftest import post_webhook, wait_for, waypost_env
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.devtools.fake_templates import template
from waypost.settings import Settings

WABA = "102290129340398"
CONTACT = "16505551234"


def account(settings: Settings) -> Settings:
    return settings.model_copy(update={"whatsapp_business_account_id": WABA})


def sync(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waypost.cli", "templates", "sync"],
        env=waypost_env(account(settings)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stored(db: psycopg.Connection) -> dict[str, dict]:
    rows = db.execute("SELECT * FROM message_templates ORDER BY name").fetchall()
    return {row["name"]: row for row in rows}  # type: ignore[index]


def test_sync_reads_every_page_and_marks_unlisted_templates_deleted(
    settings: Settings, fake_graph: FakeGraph, db: psycopg.Connection
) -> None:
    many = [template(f"t{i:03}", body="Hi {{1}}") for i in range(230)]
    many.append(template("promo", category="MARKETING", body="{{1}}, {{2}} off until {{3}} for {{1}}"))
    fake_graph.set_templates(many)
    done = sync(settings)
    assert done.returncode == 0, done.stderr
    assert "Synced 231 template(s) from 3 page(s)" in done.stdout
    assert len(fake_graph.template_requests) == 3 and all(WABA in url for url in fake_graph.template_requests)
    rows = stored(db)
    assert len(rows) == 231
    promo = rows["promo"]
    assert (promo["category"], promo["status"], promo["language"], promo["body_params"]) == (
        "MARKETING",
        "APPROVED",
        "en_US",
        3,
    )
    assert promo["components"][0]["type"] == "BODY" and promo["waba_id"] == WABA

    # the account no longer lists t000; promo was paused in the meantime
    fake_graph.set_templates([*many[1:230], template("promo", category="MARKETING", status="PAUSED")])
    again = sync(settings)
    assert again.returncode == 0, again.stderr
    assert "deleted: t000/en_US" in again.stdout
    rows = stored(db)
    assert rows["t000"]["status"] == "DELETED" and rows["promo"]["status"] == "PAUSED"
    assert rows["t001"]["status"] == "APPROVED"


def test_sync_without_the_account_id_or_with_meta_refusing_changes_nothing(
    settings: Settings, fake_graph: FakeGraph, db: psycopg.Connection
) -> None:
    fake_graph.set_templates([template("hello")])
    unset = subprocess.run(
        [sys.executable, "-m", "waypost.cli", "templates", "sync"],
        env=waypost_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unset.returncode == 2 and "WHATSAPP_BUSINESS_ACCOUNT_ID" in unset.stderr
    wrong_token = settings.model_copy(update={"whatsapp_access_token": SecretStr("not-the-token")})
    refused = sync(wrong_token)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert stored(db) == {}


def test_paging_next_off_the_graph_host_is_not_followed(
    settings: Settings, fake_graph: FakeGraph, db: psycopg.Connection
) -> None:
    fake_graph.set_templates([template("a"), template("b")])
    fake_graph.templates_next = "https://evil.example/v25.0/x/message_templates?after=1"
    done = sync(settings)
    assert done.returncode == 1 and "off the Graph API host (evil.example)" in done.stderr
    assert len(fake_graph.template_requests) == 1 and stored(db) == {}  # nothing written from half a list


def test_a_status_webhook_pauses_a_template_and_is_journaled(
    settings: Settings, fake_graph: FakeGraph, client: httpx.Client, db: psycopg.Connection
) -> None:
    fake_graph.set_templates([template("order_ready"), template("promo", category="MARKETING")])
    assert sync(settings).returncode == 0
    now = int(time.time()) + 5
    paused = payloads.dumps(
        payloads.template_status_update("PAUSED", "order_ready", reason="Low quality", timestamp=now, waba_id=WABA)
    )
    for _ in range(2):  # Meta redelivers
        assert post_webhook(client, paused).status_code == 200
    rows = stored(db)
    assert (rows["order_ready"]["status"], rows["order_ready"]["rejected_reason"]) == ("PAUSED", "Low quality")
    assert rows["promo"]["status"] == "APPROVED"
    journal = db.execute(
        "SELECT processed_at, error FROM webhook_events WHERE body = %s ORDER BY id", (paused,)
    ).fetchall()
    assert len(journal) == 2 and all(row["processed_at"] and not row["error"] for row in journal)  # type: ignore[index]

    # an older event delivered late changes nothing; a newer one applies
    stale = payloads.template_status_update("APPROVED", "order_ready", timestamp=now - 60, waba_id=WABA)
    assert post_webhook(client, payloads.dumps(stale)).status_code == 200
    assert stored(db)["order_ready"]["status"] == "PAUSED"
    again = payloads.template_status_update("APPROVED", "order_ready", timestamp=now + 60, waba_id=WABA)
    assert post_webhook(client, payloads.dumps(again)).status_code == 200
    rows = stored(db)
    assert (rows["order_ready"]["status"], rows["order_ready"]["rejected_reason"]) == ("APPROVED", None)

    # a template not synced yet gets a row; an event without a name is refused with its reason
    new = payloads.template_status_update("APPROVED", "brand_new", language="pt_BR", category="UTILITY", waba_id=WABA)
    assert post_webhook(client, payloads.dumps(new)).status_code == 200
    assert stored(db)["brand_new"]["language"] == "pt_BR"
    broken = payloads.template_status_update("APPROVED", "", waba_id=WABA)
    refused = post_webhook(client, payloads.dumps(broken))
    assert refused.status_code == 400 and "message_template_name" in refused.text


def test_a_template_reaches_meta_once_after_the_window_and_marketing_is_refused_to_an_opted_out_contact(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    settings: Settings,
    fake_graph: FakeGraph,
    start_worker,
) -> None:
    fake_graph.set_templates(
        [template("order_ready"), template("promo", category="MARKETING"), template("draft", status="PENDING")]
    )
    assert sync(settings).returncode == 0
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": CONTACT}]
    body = payloads.dumps(payloads.inbound(payloads.text_message("hello"), contacts=contacts))
    assert post_webhook(client, body).status_code == 200
    create_operator(database_url)
    inbox, cid = Inbox(client), conversation_id(db)
    start_worker()
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND status = 'sent'")
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '2 days' WHERE id = %s", [cid])
    assert inbox.post(f"/api/inbox/conversations/{cid}/messages", {"body": "hi"}).status_code == 409  # window closed

    url = f"/api/inbox/conversations/{cid}/template"
    fake_graph.script.append(Behaviour(status=503))  # the first attempt fails: retried, still sent once
    request = {"name": "order_ready", "language": "en_US", "parameters": ["Sheena", "A-17"], "client_key": "tpl-0001"}
    for _ in range(2):  # a resubmitted form sends once
        answer = inbox.post(url, request)
        assert answer.status_code == 202, answer.text
    message_id = answer.json()["message"]["id"]
    row = wait_for(db, "SELECT * FROM messages WHERE id = %s AND status = 'sent'", [message_id], timeout=30)
    assert row["send_attempts"] == 2 and row["type"] == "template"
    sent = [r for r in fake_graph.accepted() if r.body.get("type") == "template"]
    assert len(sent) == 1 and sent[0].body["to"] == CONTACT
    assert sent[0].body["template"] == {
        "name": "order_ready",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "A-17"}]}
        ],
    }

    unapproved = inbox.post(url, {"name": "draft", "language": "en_US"})
    assert unapproved.status_code == 409 and unapproved.json()["code"] == "TEMPLATE_UNAVAILABLE"
    filled = {"language": "en_US", "parameters": ["Sheena", "A-17"]}  # the counts must fit (test_template_picker)
    assert inbox.post(url, {"name": "promo", **filled}).status_code == 202  # not opted out yet
    assert post_webhook(client, payloads.dumps(payloads.user_preferences("stop", wa_id=CONTACT))).status_code == 200
    refused = inbox.post(url, {"name": "promo", "language": "en_US"})
    assert refused.status_code == 409 and refused.json()["code"] == "MARKETING_OPTED_OUT"
    assert "opted out of marketing" in refused.json()["error"]
    assert inbox.post(url, {"name": "order_ready", **filled}).status_code == 202  # utility still goes
