"""Cost and delivery: the pricing of each message (status webhooks), counted per number, category and
month (view, `waypost status`, Prometheus); messages accepted but never delivered flagged by the sweep."""

from __future__ import annotations

import json
import threading

import httpx
import psycopg
from pydantic import SecretStr

from tests.conftest import CRON_SECRET, WebServer, post_webhook, run_waypost, wait_for, wait_until
from tests.inbox_client import Inbox, conversation_id, create_operator
from tests.test_observability import METRICS_TOKEN, moved, scrape
from tests.test_reply import deliver, job_with_status
from waypost.db import execute_sync
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings

PRICED = "waypost_priced_messages_total"


def priced_sample(category: str, kind: str, billable: str) -> str:
    labels = f'billable="{billable}",category="{category}",phone_number_id="{payloads.PHONE_NUMBER_ID}",type="{kind}"'
    return f"{PRICED}{{{labels}}}"


def reply_to(db: psycopg.Connection, wa_id: str) -> dict:
    return wait_for(
        db,
        "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE c.wa_id = %s AND m.direction = 'outbound' AND m.status <> 'sending'",
        [wa_id],
    )


def test_pricing_is_stored_shown_and_counted(
    settings: Settings, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    observed = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    create_operator(observed.require_database_url())
    with WebServer(observed) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        fake_graph.webhook_url = web.url + "/api/webhooks/whatsapp"
        fake_graph.auto_statuses = ("sent", "delivered", "read")
        start_worker()
        before = scrape(web.url + "/metrics")

        # A reply inside the window (free), then one Meta bills as utility.
        deliver(client, "Are you open today?", wa_id="16505550001")
        wait_for(db, "SELECT 1 FROM messages WHERE direction = 'outbound' AND priced_at IS NOT NULL")
        fake_graph.pricing = payloads.pricing("utility", "regular", billable=True)
        deliver(client, "And tomorrow?", wa_id="16505550002")
        wait_for(db, "SELECT 1 FROM messages WHERE priced_at IS NOT NULL HAVING count(*) = 2")

        free, billed = reply_to(db, "16505550001"), reply_to(db, "16505550002")
        assert (free["pricing_category"], free["pricing_type"], free["billable"]) == (
            "service",
            "free_customer_service",
            None,  # Meta's `billable` is deprecated: absent here, so unknown rather than guessed
        )
        assert (billed["pricing_category"], billed["pricing_type"], billed["billable"]) == ("utility", "regular", True)

        # A redelivered status with the same pricing changes nothing and counts nothing again.
        again = payloads.status(billed["wa_message_id"], "delivered", pricing=fake_graph.pricing)
        assert post_webhook(client, payloads.dumps(payloads.statuses(again))).json()["statuses"] == {"duplicate": 1}

        costs = db.execute(
            "SELECT phone_number_id, category, type, messages, billable, month = date_trunc('month', now())::date"
            " AS this_month FROM waypost_message_costs ORDER BY category"
        ).fetchall()
        assert costs == [
            {
                "phone_number_id": payloads.PHONE_NUMBER_ID,
                "category": "service",
                "type": "free_customer_service",
                "messages": 1,
                "billable": 0,
                "this_month": True,
            },
            {
                "phone_number_id": payloads.PHONE_NUMBER_ID,
                "category": "utility",
                "type": "regular",
                "messages": 1,
                "billable": 1,
                "this_month": True,
            },
        ]

        after = scrape(web.url + "/metrics")
        assert moved(before, after, priced_sample("service", "free_customer_service", "false")) == 1
        assert moved(before, after, priced_sample("utility", "regular", "true")) == 1

        inbox = Inbox(client)
        conversation = conversation_id(db, "16505550002")
        shown = inbox.get(f"/api/inbox/conversations/{conversation}").json()
        [reply] = [m for m in shown["messages"] if m["direction"] == "outbound"]
        assert reply["pricing"] == {"category": "utility", "type": "regular", "billable": True}
        page = client.get(f"/inbox/conversations/{conversation}").text
        assert "cost: utility · regular · billable" in page

    status = run_waypost(observed, "status", "--json")
    assert status.stdout, status.stderr
    report = json.loads(status.stdout)
    assert {(c["category"], c["type"], c["messages"], c["billable"]) for c in report["costs"]} == {
        ("service", "free_customer_service", 1, 0),
        ("utility", "regular", 1, 1),
    }
    text = run_waypost(observed, "status").stdout
    assert f"{payloads.PHONE_NUMBER_ID} " in text and "utility regular: 1, billable 1" in text


def sweep(client: httpx.Client) -> dict:
    answer = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_accepted_message_never_delivered_is_flagged_once(
    settings: Settings, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    quick = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN), "undelivered_after_seconds": 1.0})
    create_operator(quick.require_database_url())
    with WebServer(quick) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        fake_graph.webhook_url = web.url + "/api/webhooks/whatsapp"
        start_worker()  # no automatic statuses: accepted (sent), then silence
        before = scrape(web.url + "/metrics")
        deliver(client, "Hello?", wa_id="16505550011")
        deliver(client, "Anyone there?", wa_id="16505550012")
        lost, delivered = reply_to(db, "16505550011"), reply_to(db, "16505550012")
        assert lost["status"] == delivered["status"] == "sent"
        arrived = payloads.status(delivered["wa_message_id"], "delivered")
        assert post_webhook(client, payloads.dumps(payloads.statuses(arrived))).status_code == 200

        flagged = wait_until(
            lambda: sweep(client)["undelivered_flagged"] or None, timeout=20, what="the undelivered flag"
        )
        assert flagged == 1
        assert sweep(client)["undelivered_flagged"] == 0  # flagged once, however often the sweep runs
        rows = db.execute(
            "SELECT id, undelivered_at, undelivered_at - sent_at >= interval '1 second' AS in_time"
            " FROM messages WHERE direction = 'outbound' ORDER BY id"
        ).fetchall()
        assert {r["id"]: r["undelivered_at"] is not None for r in rows} == {lost["id"]: True, delivered["id"]: False}
        assert all(r["in_time"] for r in rows if r["undelivered_at"])  # not before the setting's time
        [note] = db.execute("SELECT * FROM notifications WHERE kind = 'not_delivered'").fetchall()
        assert note["message_id"] == lost["id"] and note["conversation_id"] == lost["conversation_id"]
        assert "accepted by WhatsApp" in note["body"] and "not delivered" in note["body"]

        after = scrape(web.url + "/metrics")
        assert moved(before, after, "waypost_undelivered_flagged_total") == 1
        assert after["waypost_undelivered_messages"] == 1

        inbox = Inbox(client)
        conversation = conversation_id(db, "16505550011")
        [reply] = [
            m
            for m in inbox.get(f"/api/inbox/conversations/{conversation}").json()["messages"]
            if m["direction"] == "outbound"
        ]
        assert reply["undelivered_at"] is not None
        assert "data-undelivered" in client.get(f"/inbox/conversations/{conversation}").text

        # Delivered at last: the flag stays on the row (it happened), the inbox and the gauge move on.
        late = payloads.status(lost["wa_message_id"], "delivered")
        assert post_webhook(client, payloads.dumps(payloads.statuses(late))).status_code == 200
        assert scrape(web.url + "/metrics")["waypost_undelivered_messages"] == 0
        [reply] = [
            m
            for m in inbox.get(f"/api/inbox/conversations/{conversation}").json()["messages"]
            if m["direction"] == "outbound"
        ]
        assert reply["undelivered_at"] is None and reply["status"] == "delivered"
        assert "data-undelivered" not in client.get(f"/inbox/conversations/{conversation}").text


def test_service_budget_threshold_notifies_once_and_the_cap_leaves_replies_to_operators(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, start_worker
) -> None:
    create_operator(settings.require_database_url())
    start_worker(WAYPOST_SERVICE_BUDGET_THRESHOLD="1", WAYPOST_SERVICE_BUDGET_CAP="2")

    def notes(kind: str) -> list[dict]:
        return db.execute("SELECT * FROM notifications WHERE kind = %s", (kind,)).fetchall()

    deliver(client, "First question", wa_id="16505550021")
    job_with_status(db, "done", "skipped", count=1)
    assert notes("service_budget_threshold") == [] and notes("service_budget_cap") == []
    deliver(client, "Second question", wa_id="16505550022")  # one service message sent: the threshold
    job_with_status(db, "done", "skipped", count=2)
    [threshold] = notes("service_budget_threshold")
    assert payloads.PHONE_NUMBER_ID in threshold["body"] and "threshold is 1, the cap 2" in threshold["body"]
    assert notes("service_budget_cap") == []

    # Two sent: the cap. The AI stays silent, says so once, and the operators can still answer.
    for text in ("Third question", "Fourth question"):
        deliver(client, text, wa_id="16505550021")
    jobs = job_with_status(db, "done", "skipped", count=4)
    assert [j["status"] for j in jobs] == ["done", "done", "skipped", "skipped"]
    assert all(j["skip_reason"].startswith("monthly service-message cap reached (2 for ") for j in jobs[2:])
    assert len(db.execute("SELECT 1 FROM messages WHERE direction = 'outbound'").fetchall()) == 2
    [cap] = notes("service_budget_cap")
    assert "the AI stops answering" in cap["body"]
    assert len(notes("service_budget_threshold")) == 1

    inbox = Inbox(client)
    conversation = conversation_id(db, "16505550021")
    shown = inbox.get(f"/api/inbox/conversations/{conversation}").json()["messages"]
    assert [m["ai_job"]["status"] for m in shown if m["direction"] == "inbound"] == ["done", "skipped", "skipped"]
    assert "cap reached" in client.get(f"/inbox/conversations/{conversation}").text
    sent = inbox.post(f"/api/inbox/conversations/{conversation}/messages", {"body": "An operator answers"})
    assert sent.status_code in (200, 201, 202), sent.text
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'operator' AND status = 'sent'")


def test_two_workers_crossing_the_budget_threshold_together_notify_once(
    database_url: str, db: psycopg.Connection
) -> None:
    """The once-only insert is decided by a unique key, not by a look first: the second of two
    concurrent transactions waits for the first and then adds nothing."""
    note = {"kind": "service_budget_threshold", "body": "Number 1 reached 5 service messages in 2026-11"}
    done: dict[str, int] = {}
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        assert execute_sync(first, "notification_insert_ever_once", **note) == 1  # not committed yet

        def race() -> None:
            done["rows"] = execute_sync(second, "notification_insert_ever_once", **note)
            second.commit()

        racer = threading.Thread(target=race)
        racer.start()
        wait_for(db, "SELECT 1 FROM pg_locks WHERE NOT granted")  # the second waits for the first
        first.commit()
        racer.join(timeout=20)
    assert done == {"rows": 0}
    assert db.execute("SELECT count(*) AS n FROM notifications WHERE kind = %(kind)s", note).fetchone() == {"n": 1}
