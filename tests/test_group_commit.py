"""Group commit (webhook/group_commit.py): POSTs that come while the web process's webhook statements
are all busy wait, and the next statement stores them together; each is answered after that commit.

The tests hold every statement at the journal row's insert (a lock on `webhook_events`), send more
POSTs while they wait, then let go. A group's rows share their transaction id (`xmin`)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import WebServer, post_webhook, wait_until
from tests.test_transactional_defer import fail_after_the_defer_of
from waypost.devtools import payloads
from waypost.settings import Settings
from webhook.group_commit import GroupCommit

HELD = 2  # WAYPOST_WEBHOOK_STATEMENTS in the tests' settings: the POSTs held at the lock
WAITING = 8  # the POSTs that wait for a statement meanwhile


@pytest.fixture
def held(database_url: str) -> Iterator[psycopg.Connection]:
    """A transaction that holds back every journal row's insert until it commits."""
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE webhook_events IN EXCLUSIVE MODE")
        yield conn


def groups(web: WebServer) -> GroupCommit:
    app: Any = web.server.config.app
    return app.state.waypost.webhooks


def statements_held(db: psycopg.Connection) -> int:
    return db.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%store_webhook%'"
        " AND application_name <> 'waypost-warm-up'"  # a replaced connection's warm-up, which gives up by itself
    ).fetchone()["n"]


def message(i: int) -> bytes:
    text = payloads.text_message(f"hello {i}", wa_id=f"1555000{i:04d}", wamid=f"wamid.m{i}")
    return payloads.dumps(payloads.inbound(text))


def status(wamid: str) -> bytes:
    return payloads.dumps(payloads.statuses(payloads.status(wamid, "delivered", pricing=payloads.pricing())))


def outbound_message(db: psycopg.Connection, wamid: str) -> None:
    conversation = db.execute(
        "INSERT INTO conversations (phone_number_id, wa_id) VALUES (%s, '15559990000') RETURNING id",
        [payloads.PHONE_NUMBER_ID],
    ).fetchone()["id"]
    db.execute(
        "INSERT INTO messages (conversation_id, direction, author, idempotency_key, type, body, status, wa_message_id)"
        " VALUES (%s, 'outbound', 'ai', 'k1', 'text', 'Our hours are 9 to 5.', 'sent', %s)",
        [conversation, wamid],
    )


def post_held_then_waiting(
    web: WebServer, client: httpx.Client, db: psycopg.Connection, held: psycopg.Connection, bodies: list[bytes]
) -> list[httpx.Response]:
    """POST the first HELD bodies, wait until their statements wait at the lock, POST the rest, wait
    until they all wait for a statement, then let go: the responses in the bodies' order."""
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        first = [pool.submit(post_webhook, client, body) for body in bodies[:HELD]]
        wait_until(lambda: statements_held(db) == HELD, what="the first POSTs' statements waiting at the lock")
        rest = [pool.submit(post_webhook, client, body) for body in bodies[HELD:]]
        wait_until(lambda: groups(web).waiting == len(rest), what="the other POSTs waiting for a statement")
        assert all(not future.done() for future in first + rest)  # nothing is answered before its commit
        held.commit()
        return [future.result(timeout=30) for future in first + rest]


def transactions(db: psycopg.Connection, wamids: list[str]) -> int:
    """How many transactions wrote these messages (each webhook alone: one each)."""
    return db.execute(
        "SELECT count(DISTINCT xmin::text) AS n FROM messages WHERE wa_message_id = ANY(%s)", [wamids]
    ).fetchone()["n"]


def test_webhooks_that_wait_for_a_statement_are_stored_together_and_answered_each(
    web: WebServer, client: httpx.Client, db: psycopg.Connection, held: psycopg.Connection, settings: Settings
) -> None:
    assert settings.webhook_statements == HELD
    outbound_message(db, "wamid.sent")
    bodies = [message(i) for i in range(HELD + WAITING - 2)] + [status("wamid.sent"), status("wamid.unknown")]
    responses = post_held_then_waiting(web, client, db, held, bodies)

    assert [response.status_code for response in responses] == [200] * len(bodies)
    answers = [response.json() for response in responses]
    assert [answer["messages"] for answer in answers] == [1] * (len(bodies) - 2) + [0, 0]
    assert [answer["jobs"] for answer in answers] == [1] * (len(bodies) - 2) + [0, 0]
    assert answers[-2]["statuses"] == {"applied": 1} and answers[-1]["statuses"] == {"pending": 1}
    assert len({answer["request_id"] for answer in answers}) == len(bodies)

    # the waiting ones went in one statement: one transaction wrote their messages and journal rows
    waited = [f"wamid.m{i}" for i in range(HELD, len(bodies) - 2)]
    assert transactions(db, waited) == 1
    assert transactions(db, ["wamid.m0", "wamid.m1"]) == 2
    events = db.execute("SELECT count(*) AS n, count(DISTINCT xmin::text) AS tx FROM webhook_events").fetchone()
    assert events == {"n": len(bodies), "tx": HELD + 1}
    # each message with its turn and its queued reply, each journal row with its own body
    jobs = db.execute(
        "SELECT count(*) AS n FROM outbound_jobs j JOIN procrastinate_jobs q ON q.id = j.procrastinate_job_id"
    ).fetchone()
    assert jobs["n"] == len(bodies) - 2
    kept = {bytes(row["body"]) for row in db.execute("SELECT body FROM webhook_events")}
    assert kept == set(bodies)
    status_row = db.execute("SELECT status FROM messages WHERE wa_message_id = 'wamid.sent'").fetchone()
    assert status_row["status"] == "delivered"


def test_a_refused_item_in_a_group_fails_only_its_own_webhook(
    web: WebServer,
    client: httpx.Client,
    db: psycopg.Connection,
    held: psycopg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 22000 (a data exception) when wamid.m5's reply is linked: the group's statement is undone whole,
    # then each webhook is stored on its own, and only m5's takes the general path, which names it
    fail_after_the_defer_of(db, "wamid.m5", "22000")
    bodies = [message(i) for i in range(HELD + WAITING)]
    responses = post_held_then_waiting(web, client, db, held, bodies)

    assert [response.status_code for response in responses] == [200] * len(bodies)
    refused = [[item["id"] for item in response.json().get("refused", [])] for response in responses]
    assert refused == [[] if i != 5 else ["wamid.m5"] for i in range(len(bodies))]
    stored = db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"]
    assert stored == len(bodies) - 1
    assert transactions(db, [f"wamid.m{i}" for i in range(HELD, len(bodies)) if i != 5]) == WAITING - 1
    assert db.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"] == len(bodies)
    error = db.execute("SELECT error FROM webhook_events WHERE error IS NOT NULL").fetchone()["error"]
    assert "wamid.m5" in error
    # only m5's webhook took the general path (two transactions); the others' one statement each
    one_by_one = [r for r in caplog.records if r.name == "webhook.endpoints" and "one by one" in r.getMessage()]
    assert len(one_by_one) == 1
    assert [r.getMessage() for r in caplog.records if "webhook group of" in r.getMessage()] == [
        f"webhook group of {WAITING} refused (DataException: refused after the defer); storing each on its own"
    ]


def test_a_group_whose_connection_is_lost_is_answered_503_whole_and_stored_once_when_delivered_again(
    web: WebServer, client: httpx.Client, db: psycopg.Connection, held: psycopg.Connection
) -> None:
    bodies = [message(i) for i in range(HELD + 3)]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        first = [pool.submit(post_webhook, client, body) for body in bodies[:HELD]]
        wait_until(lambda: statements_held(db) == HELD, what="the first POSTs' statements waiting at the lock")
        rest = [pool.submit(post_webhook, client, body) for body in bodies[HELD:]]
        wait_until(lambda: groups(web).waiting == len(rest), what="the other POSTs waiting for a statement")
        # a database restart, as the web process sees it: its statements' connections end
        terminate_held(db)
        assert [future.result(timeout=30).status_code for future in first] == [503] * HELD
        wait_until(lambda: statements_held(db) == 1, what="the group's statement waiting at the lock")
        terminate_held(db)
        # the whole group at once, not each webhook again on its own (each would wait for the lock)
        assert [future.result(timeout=30).status_code for future in rest] == [503] * len(rest)
    held.commit()
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 0  # nothing half-stored
    for body in bodies:  # Meta delivers again
        assert post_webhook(client, body).json()["messages"] == 1
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == len(bodies)


def terminate_held(db: psycopg.Connection) -> None:
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND query LIKE '%store_webhook%' AND application_name <> 'waypost-warm-up'"
    )
