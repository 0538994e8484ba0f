"""The web process warms its pool's connections at start (webhook/warmup.py): both webhook statements
run on each, in a transaction rolled back. Nothing is written and nothing is notified; a warm-up that
fails never stops the start."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from tests.conftest import WebServer, post_webhook
from waypost.db import create_pool
from waypost.devtools import payloads
from waypost.settings import Settings
from webhook import warmup
from webhook.app import warmup_connections
from webhook.group_commit import GroupCommit

TABLES = ("webhook_events", "conversations", "messages", "outbound_jobs", "procrastinate_jobs", "message_statuses")


def rows(db: psycopg.Connection) -> dict[str, int]:
    return {table: db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] for table in TABLES}


def journal_ids_used(db: psycopg.Connection) -> int:
    """How many journal ids were taken so far, rolled back or not: a sequence is not transactional."""
    row = db.execute("SELECT last_value, is_called FROM webhook_events_id_seq").fetchone()
    return row["last_value"] if row["is_called"] else 0


def test_each_connection_runs_both_statements_and_nothing_is_written_or_notified(
    db: psycopg.Connection, database_url: str, settings: Settings
) -> None:
    before = rows(db)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN waypost_inbox")
        listener.execute("LISTEN procrastinate_any_queue_v1")

        async def warm() -> list[int]:
            async with create_pool(settings) as pool:
                webhooks = GroupCommit(pool, settings.turn_window, settings.webhook_statements)
                return await warmup.warm_up(pool, webhooks, 3)

        warmed = asyncio.run(warm())
        # three connections, each a different backend, each ran the three webhooks (one alone, two in a group)
        assert len(set(warmed)) == 3
        assert journal_ids_used(db) == 3 * 3
        assert rows(db) == before

        # nothing notified: the first notification to arrive is the test's own, sent after the warm-up
        db.execute("NOTIFY waypost_inbox, 'after the warm-up'")
        first = next(listener.notifies(timeout=10))
        assert first.payload == "after the warm-up"


def test_the_web_process_warms_up_before_it_takes_requests(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="webhook.warmup")
    assert warmup_connections(settings) == 2  # the tests' pool opens 1, and the webhook statements are 2
    with WebServer(settings):
        assert journal_ids_used(db) == 2 * 3
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["warmed 2 database connections"]


def test_a_warm_up_that_fails_never_stops_the_start(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused by the database (here a trigger): the process starts, says so, and stores webhooks."""
    db.execute(
        "CREATE FUNCTION test_refuse_warm_up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.request_id = 'warm-up' THEN RAISE EXCEPTION 'no warm-up here'; END IF; RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER test_refuse_warm_up BEFORE INSERT ON webhook_events FOR EACH ROW"
        " EXECUTE FUNCTION test_refuse_warm_up()"
    )
    with WebServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        body = payloads.dumps(payloads.inbound(payloads.text_message("hello", wa_id="15550001111")))
        assert post_webhook(client, body).status_code == 200
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "webhook.warmup" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "given up after 0 of 2" in warnings[0] and "no warm-up here" in warnings[0]
