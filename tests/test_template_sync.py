"""Keeping the templates table current: the sweep's scheduled sync (once under concurrent sweeps, a
failing Graph API reported and retried), quality and category webhooks, and the operators told when a
template is paused, rejected, rated low or recategorised, once per event."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.conftest import CRON_SECRET, WebServer, post_webhook, run_waypost, wait_until
from tests.inbox_client import create_operator, sign_in
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.devtools.fake_templates import template
from waypost.settings import Settings

WABA = "102290129340398"


def scheduled(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(update={"whatsapp_business_account_id": WABA, **update})


@pytest.fixture
def web_client(settings: Settings) -> Iterator[httpx.Client]:
    """The app with the account id set and the default schedule (an hour)."""
    with WebServer(scheduled(settings)) as web, httpx.Client(base_url=web.url, timeout=30) as client:
        yield client


def sweep(client: httpx.Client) -> dict:
    answer = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def stored(db: psycopg.Connection) -> dict[str, dict]:
    return {row["name"]: row for row in db.execute("SELECT * FROM message_templates ORDER BY name")}  # type: ignore[index]


def notifications(db: psycopg.Connection, kind: str) -> list[dict]:
    return db.execute("SELECT * FROM notifications WHERE kind = %s ORDER BY id", [kind]).fetchall()  # type: ignore[return-value]


def test_the_sweep_syncs_templates_on_schedule_and_not_before(
    settings: Settings, fake_graph: FakeGraph, db: psycopg.Connection, web_client: httpx.Client
) -> None:
    fake_graph.set_templates([template("order_ready"), template("promo", category="MARKETING")])
    first = sweep(web_client)
    assert (first["templates_synced"], first["template_sync_failed"]) == (2, 0)
    assert len(fake_graph.template_requests) == 1 and set(stored(db)) == {"order_ready", "promo"}
    assert sweep(web_client)["templates_synced"] == 0  # an hour has not passed
    assert len(fake_graph.template_requests) == 1

    # an hour later (the last sync moved back): the sweep syncs again and sees what changed
    fake_graph.set_templates([template("order_ready", status="PAUSED")])
    db.execute("UPDATE template_syncs SET synced_at = synced_at - interval '61 minutes'")
    again = sweep(web_client)
    assert again["templates_synced"] == 1 and len(fake_graph.template_requests) == 2
    rows = stored(db)
    assert (rows["order_ready"]["status"], rows["promo"]["status"]) == ("PAUSED", "DELETED")
    # no webhook told of the pause (missed, or not subscribed): the sync tells the operators
    [paused] = notifications(db, "template_status")
    assert paused["body"].startswith("Template order_ready (en_US) was paused by WhatsApp.")

    # `waypost templates sync` by hand counts as the last sync too
    db.execute("UPDATE template_syncs SET synced_at = synced_at - interval '61 minutes'")
    by_hand = run_waypost(scheduled(settings), "templates", "sync")
    assert by_hand.returncode == 0, by_hand.stderr
    assert sweep(web_client)["templates_synced"] == 0 and len(fake_graph.template_requests) == 3
    [state] = db.execute("SELECT * FROM template_syncs").fetchall()
    assert state["waba_id"] == WABA and state["started_at"] is None and state["failures"] == 0  # type: ignore[index]

    # 0 turns it off; without the account id there is nothing to sync
    for off in (scheduled(settings, template_sync_seconds=0), settings):
        db.execute("UPDATE template_syncs SET synced_at = NULL")
        with WebServer(off) as web, httpx.Client(base_url=web.url, timeout=30) as client:
            assert sweep(client)["templates_synced"] == 0
    assert len(fake_graph.template_requests) == 3


@contextlib.contextmanager
def sweep_held_at_its_list(settings: Settings, fake_graph: FakeGraph) -> Iterator[tuple[httpx.Client, Future[dict]]]:
    """A sweep whose template list request waits until the block ends: a client of its app, and the
    sweep's report to come (done once the block has ended)."""
    fake_graph.templates_hold = threading.Event()
    patient = scheduled(settings, send_read_timeout=30.0)
    with (
        WebServer(patient) as web,
        httpx.Client(base_url=web.url, timeout=60) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        held = pool.submit(sweep, client)
        try:
            wait_until(lambda: fake_graph.template_requests, what="the sweep's list request")
            yield client, held
        finally:
            fake_graph.templates_hold.set()  # a failing test leaves nothing waiting


def test_two_sweeps_at_once_sync_once(settings: Settings, fake_graph: FakeGraph, db: psycopg.Connection) -> None:
    fake_graph.set_templates([template("order_ready"), template("promo")])
    with sweep_held_at_its_list(settings, fake_graph) as (client, first):
        second = sweep(client)  # while the first is syncing
        assert (second["templates_synced"], second["template_sync_failed"]) == (0, 0)
        assert not first.done()
    assert first.result(timeout=60)["templates_synced"] == 2
    assert len(fake_graph.template_requests) == 1 and set(stored(db)) == {"order_ready", "promo"}


def test_a_sync_does_not_undo_a_status_webhook_that_arrived_while_it_read_the_list(
    settings: Settings, fake_graph: FakeGraph, db: psycopg.Connection
) -> None:
    fake_graph.set_templates([template("order_ready", status="PENDING"), template("promo")])
    with sweep_held_at_its_list(settings, fake_graph) as (client, syncing):
        # while the list is read: Meta approves order_ready, and a new template's first status arrives
        now = int(time.time()) + 1
        for name in ("order_ready", "fresh"):
            event = payloads.template_status_update("APPROVED", name, timestamp=now, waba_id=WABA)
            assert post_webhook(client, payloads.dumps(event)).status_code == 200
    # the list, read before the approval, still said PENDING
    assert syncing.result(timeout=60)["templates_synced"] == 2
    rows = stored(db)
    assert (rows["order_ready"]["status"], rows["fresh"]["status"], rows["promo"]["status"]) == (
        "APPROVED",  # the webhook is newer than what the sync read
        "APPROVED",  # not listed, but stored after the read: not taken for deleted
        "APPROVED",
    )
    # the webhooks' two events, and none from the sync: what it read was older, nothing to tell
    events = db.execute("SELECT name, value FROM template_events WHERE kind = 'status' ORDER BY id").fetchall()
    assert [(e["name"], e["value"]) for e in events] == [("order_ready", "APPROVED"), ("fresh", "APPROVED")]  # type: ignore[index]


def test_a_failing_graph_api_is_reported_the_rest_of_the_sweep_runs_and_the_next_sweep_retries(
    fake_graph: FakeGraph, db: psycopg.Connection, web_client: httpx.Client
) -> None:
    fake_graph.set_templates([template("order_ready")])
    body = payloads.dumps(payloads.inbound(payloads.text_message("hello")))
    assert post_webhook(web_client, body).status_code == 200
    db.execute("UPDATE webhook_events SET received_at = now() - interval '60 days'")  # past retention
    token = fake_graph.access_token
    fake_graph.access_token = "rotated"  # Meta now refuses Waypost's token

    failed = sweep(web_client)
    assert (failed["templates_synced"], failed["template_sync_failed"]) == (0, 1)
    assert failed["webhook_events_deleted"] == 1  # the rest of the sweep ran
    [state] = db.execute("SELECT * FROM template_syncs").fetchall()
    assert "HTTP 401" in state["error"] and state["failures"] == 1 and state["synced_at"] is None  # type: ignore[index]
    assert stored(db) == {}

    fake_graph.access_token = token
    retried = sweep(web_client)  # the next sweep, with no hour to wait
    assert (retried["templates_synced"], retried["template_sync_failed"]) == (1, 0)
    [state] = db.execute("SELECT * FROM template_syncs").fetchall()
    assert state["error"] is None and state["failures"] == 0 and state["synced_at"] is not None  # type: ignore[index]
    assert stored(db)["order_ready"]["status"] == "APPROVED"


def test_quality_and_category_webhooks_update_the_row_and_older_ones_are_ignored(
    fake_graph: FakeGraph, db: psycopg.Connection, web_client: httpx.Client
) -> None:
    fake_graph.set_templates([template("order_ready"), template("welcome")])
    assert sweep(web_client)["templates_synced"] == 2
    now = int(time.time()) + 5

    def post(document: dict) -> None:
        answer = post_webhook(web_client, payloads.dumps(document))
        assert answer.status_code == 200, answer.text

    red = payloads.template_quality_update("order_ready", "RED", "YELLOW", timestamp=now, waba_id=WABA)
    post(red)
    post(red)  # Meta redelivers
    assert stored(db)["order_ready"]["quality"] == "RED"
    [low] = notifications(db, "template_quality")
    assert "order_ready (en_US)" in low["body"] and "RED (was YELLOW)" in low["body"]
    post(payloads.template_quality_update("order_ready", "YELLOW", "RED", timestamp=now + 20, waba_id=WABA))
    post(payloads.template_quality_update("order_ready", "RED", "GREEN", timestamp=now + 10, waba_id=WABA))  # late
    assert stored(db)["order_ready"]["quality"] == "YELLOW"
    assert len(notifications(db, "template_quality")) == 1  # neither YELLOW nor the late RED is told
    synced_before = payloads.template_quality_update("welcome", "RED", timestamp=now - 3600, waba_id=WABA)
    post(synced_before)  # older than the sync that stored the template
    assert stored(db)["welcome"]["quality"] is None

    changed = payloads.template_category_update("order_ready", "MARKETING", "UTILITY", timestamp=now, waba_id=WABA)
    post(changed)
    post(changed)
    post(payloads.template_category_update("order_ready", "UTILITY", "MARKETING", timestamp=now - 2, waba_id=WABA))
    assert stored(db)["order_ready"]["category"] == "MARKETING"
    late_notice = payloads.template_category_update(
        "order_ready", "UTILITY", correct="MARKETING", timestamp=now - 1, waba_id=WABA
    )
    post(late_notice)  # the notice of the change that has happened since
    [recategorised] = notifications(db, "template_category")
    assert "order_ready (en_US) is now in the MARKETING category (was UTILITY)" in recategorised["body"]

    update_at = now + 86400
    notice = payloads.template_category_update(
        "welcome", "UTILITY", correct="MARKETING", update_at=update_at, timestamp=now, waba_id=WABA
    )
    post(notice)
    assert stored(db)["welcome"]["category"] == "UTILITY"  # only a notice: nothing changes yet
    pending = notifications(db, "template_category")[-1]
    assert "welcome (en_US) will be recategorised from UTILITY to MARKETING on " in pending["body"]

    events = db.execute("SELECT kind, value, applied FROM template_events ORDER BY id").fetchall()
    assert [(e["kind"], e["value"], e["applied"]) for e in events] == [  # type: ignore[index]
        ("quality", "RED", True),
        ("quality", "YELLOW", True),
        ("quality", "RED", False),
        ("quality", "RED", False),
        ("category", "MARKETING", True),
        ("category", "UTILITY", False),
        ("category_pending", "MARKETING", False),
        ("category_pending", "MARKETING", True),
    ]
    journal = db.execute("SELECT processed_at, error FROM webhook_events WHERE body IS NOT NULL").fetchall()
    assert len(journal) == 10 and all(row["processed_at"] and not row["error"] for row in journal)  # type: ignore[index]


def test_a_paused_or_rejected_template_is_notified_once_and_shown_in_the_inbox(
    database_url: str, fake_graph: FakeGraph, db: psycopg.Connection, web_client: httpx.Client
) -> None:
    fake_graph.set_templates([template("order_ready"), template("promo", category="MARKETING")])
    assert sweep(web_client)["templates_synced"] == 2
    now = int(time.time()) + 5
    paused = payloads.template_status_update("PAUSED", "order_ready", reason="Low quality", timestamp=now, waba_id=WABA)
    rejected = payloads.template_status_update(
        "REJECTED", "promo", reason="INVALID_FORMAT", timestamp=now, waba_id=WABA
    )
    late = payloads.template_status_update("PAUSED", "promo", timestamp=now - 30, waba_id=WABA)
    for document in (paused, paused, rejected, rejected, late):  # Meta redelivers each
        assert post_webhook(web_client, payloads.dumps(document)).status_code == 200
    rows = stored(db)
    assert (rows["order_ready"]["status"], rows["promo"]["status"]) == ("PAUSED", "REJECTED")
    bodies = [n["body"] for n in notifications(db, "template_status")]
    assert bodies == [
        "Template order_ready (en_US) was paused by WhatsApp: Low quality."
        " Sending it fails until it is approved again.",
        "Template promo (en_US) was rejected by WhatsApp: INVALID_FORMAT. Sending it fails until it is approved again.",
    ]
    approved = payloads.template_status_update("APPROVED", "order_ready", timestamp=now + 30, waba_id=WABA)
    assert post_webhook(web_client, payloads.dumps(approved)).status_code == 200
    assert len(notifications(db, "template_status")) == 2  # approval is not an alarm
    # a later sync that finds what the webhooks said tells nothing again
    fake_graph.set_templates([template("order_ready"), template("promo", category="MARKETING", status="REJECTED")])
    db.execute("UPDATE template_syncs SET synced_at = synced_at - interval '2 hours'")
    assert sweep(web_client)["templates_synced"] == 2
    assert len(notifications(db, "template_status")) == 2

    create_operator(database_url)
    assert sign_in(web_client).status_code == 303
    page = web_client.get("/inbox/notifications").text
    assert "template status" in page and "order_ready (en_US) was paused by WhatsApp: Low quality" in page


def test_malformed_or_unknown_template_webhooks_are_journaled_with_their_reason(
    fake_graph: FakeGraph, db: psycopg.Connection, web_client: httpx.Client
) -> None:
    fake_graph.set_templates([template("order_ready")])
    assert sweep(web_client)["templates_synced"] == 1
    quality = "message_template_quality_update"
    cases = [
        (payloads.template_quality_update("order_ready", "PURPLE", waba_id=WABA), "new_quality_score 'PURPLE'"),
        (payloads.template_change({"message_template_language": "en_US"}, quality), "message_template_name"),
        (payloads.template_change("RED", quality), "value: Input should be a valid dictionary"),
        (payloads.template_category_update("order_ready", "SERVICE", "UTILITY"), "new_category 'SERVICE'"),
        (payloads.template_category_update("order_ready", {"x": 1}, "UTILITY"), "new_category must be a word"),
    ]
    for document, reason in cases:
        body = payloads.dumps(document)
        answer = post_webhook(web_client, body)
        assert answer.status_code == 400 and reason in answer.text, answer.text
        [row] = db.execute("SELECT error FROM webhook_events WHERE body = %s", [body]).fetchall()
        assert reason in row["error"]  # type: ignore[index]

    # one good change and one bad in a webhook: the good one applies, the bad one is named
    good = payloads.template_quality_update("order_ready", "RED", timestamp=int(time.time()) + 5, waba_id=WABA)
    bad = payloads.template_quality_update("order_ready", "PURPLE", waba_id=WABA)
    good["entry"].append(bad["entry"][0])
    body = payloads.dumps(good)
    assert post_webhook(web_client, body).status_code == 200
    assert stored(db)["order_ready"]["quality"] == "RED"
    [row] = db.execute("SELECT error FROM webhook_events WHERE body = %s", [body]).fetchall()
    assert "entry.1.changes.0.value: new_quality_score 'PURPLE'" in row["error"]  # type: ignore[index]
    assert notifications(db, "webhook_item_refused")
    assert db.execute("SELECT count(*) AS n FROM template_events").fetchone()["n"] == 1  # type: ignore[index]
