"""yoyo migrations, verify-schema, the DB_MISMATCH guard and the startup refusals."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import psycopg

from tests.conftest import WebServer, post_webhook, run_waypost, waypost_env
from waypost.db import create_pool
from waypost.devtools import payloads
from waypost.schema import EXPECTED_COLUMNS, SchemaReport, migrate, migration_ids
from waypost.settings import Settings
from webhook.state import SchemaGuard

OURS = ("conversations", "messages", "outbound_jobs", "webhook_events", "message_statuses", "notifications")


def test_expected_columns_are_exactly_what_the_migrations_create(db: psycopg.Connection) -> None:
    for table in OURS:
        columns = tuple(
            r["column_name"]
            for r in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                [table],
            )
        )
        assert columns == EXPECTED_COLUMNS[table], table


def test_migrate_on_an_empty_database_then_again_is_a_no_op(pg, settings: Settings) -> None:
    url = pg.create_database("fresh_migrate")
    assert migrate(url) == migration_ids()
    assert migration_ids()[0] == "0001_procrastinate_3.10.0_schema"
    assert migrate(url) == []
    result = run_waypost(settings.model_copy(update={"database_url": url}), "verify-schema")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("Schema verification PASSED")
    assert "✓ migration 0003_waypost_functions applied" in result.stdout


def test_yoyo_apply_is_the_same_schema_step(pg, settings: Settings) -> None:
    from waypost.schema import yoyo_url
    from waypost.sql import MIGRATIONS_DIR

    url = pg.create_database("fresh_yoyo")
    yoyo = [sys.executable, "-m", "yoyo.scripts.main"]
    done = subprocess.run(
        [*yoyo, "apply", "--batch", "--no-config-file", "--database", yoyo_url(url), str(MIGRATIONS_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = run_waypost(settings.model_copy(update={"database_url": url}), "verify-schema")
    assert result.returncode == 0, result.stdout


def test_drift_is_refused_everywhere_until_migrate_repairs_it(settings: Settings, db: psycopg.Connection) -> None:
    with WebServer(settings) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        body = payloads.dumps(payloads.inbound(payloads.text_message("before drift")))
        assert post_webhook(client, body).status_code == 200

        db.execute("ALTER TABLE conversations DROP COLUMN deleted_at")
        result = run_waypost(settings, "verify-schema")
        assert result.returncode == 1
        assert "✗ table conversations: missing column(s) conversations.deleted_at" in result.stdout
        assert "✗ unique index conversations_live_contact_key missing" in result.stdout
        assert result.stdout.strip().endswith("Schema verification FAILED")

        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["code"] == "DB_MISMATCH"
        refused = post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message("x"))))
        assert refused.status_code == 500
        assert refused.json()["code"] == "DB_MISMATCH"
        assert any("conversations.deleted_at" in p for p in refused.json()["problems"])
        handshake = client.get("/api/webhooks/whatsapp", params={"hub.mode": "subscribe"})
        assert handshake.json()["code"] == "DB_MISMATCH"
        assert client.get("/healthz").status_code == 200  # alive, just not ready

        result = run_waypost(settings, "migrate")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Schema verification PASSED" in result.stdout
        assert client.get("/readyz").status_code == 200
        assert post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message("after")))).status_code == 200
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 2


def test_a_query_hitting_drift_answers_db_mismatch_at_once(settings: Settings, db: psycopg.Connection) -> None:
    slow_check = settings.model_copy(update={"schema_check_interval": 3600})
    with WebServer(slow_check) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        db.execute("ALTER TABLE messages DROP COLUMN contact_sent_at")
        response = post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message("x"))))
        assert response.status_code == 500 and response.json()["code"] == "DB_MISMATCH"
        assert "messages.contact_sent_at" in " ".join(response.json()["problems"])
    event = db.execute("SELECT error FROM webhook_events").fetchone()
    assert event["error"].startswith("DB_MISMATCH")


def test_worker_refuses_to_start_on_a_mismatch(settings: Settings, db: psycopg.Connection) -> None:
    db.execute("ALTER TABLE notifications DROP COLUMN snoozed_until")
    result = run_waypost(settings, "worker")
    assert result.returncode == 1
    assert "DB_MISMATCH" in result.stderr and "notifications.snoozed_until" in result.stderr
    procrastinate = subprocess.run(
        [sys.executable, "-m", "procrastinate", "--app=worker.app", "worker"],
        env=waypost_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert procrastinate.returncode == 1
    assert "DB_MISMATCH" in procrastinate.stderr


def test_serve_refuses_to_start_without_an_app_secret(settings: Settings) -> None:
    result = run_waypost(settings, "serve", "--port", "0", WHATSAPP_APP_SECRET="")
    assert result.returncode == 2
    assert "WHATSAPP_APP_SECRET is not set" in result.stderr


def test_signature_checks_can_be_disabled_only_explicitly(settings: Settings, db: psycopg.Connection) -> None:
    unsigned = settings.model_copy(update={"whatsapp_app_secret": None, "dangerously_skip_signature_check": True})
    with WebServer(unsigned) as web, httpx.Client(base_url=web.url) as client:
        response = post_webhook(client, payloads.dumps(payloads.DOCUMENTED_INBOUND), secret=None)
        assert response.status_code == 200
    assert db.execute("SELECT signature FROM webhook_events").fetchone()["signature"] == "not_checked"


def test_a_dropped_inbox_trigger_is_drift_that_migrate_repairs(settings: Settings, db: psycopg.Connection) -> None:
    db.execute("DROP TRIGGER waypost_inbox_messages ON messages")
    result = run_waypost(settings, "verify-schema")
    assert result.returncode == 1 and "✗ trigger waypost_inbox_messages missing" in result.stdout
    repaired = run_waypost(settings, "migrate")
    assert repaired.returncode == 0 and "Schema verification PASSED" in repaired.stdout


class CountedGuard(SchemaGuard):
    """The web app's guard, counting its catalog checks."""

    checks = 0

    async def _verify(self) -> SchemaReport:
        self.checks += 1
        return await super()._verify()


async def test_the_periodic_schema_recheck_never_holds_a_request(settings: Settings, db: psycopg.Connection) -> None:
    """Past the interval, a whole schema's re-check runs beside the requests: they are answered from
    the last check while it waits (here, for the pool's one connection), and the drift it finds
    refuses the requests after it."""
    async with create_pool(settings.model_copy(update={"db_pool_min_size": 1, "db_pool_max_size": 1})) as pool:
        guard = CountedGuard(pool, interval=0.05)
        assert (await guard.refresh()).ok
        db.execute("ALTER TABLE conversations DROP COLUMN deleted_at")
        await asyncio.sleep(0.1)
        async with pool.connection():  # the re-check cannot start its queries
            reports = [await asyncio.wait_for(guard.current(), timeout=1) for _ in range(20)]
            for _ in range(100):  # the re-check task's first steps
                if guard.checks == 2:
                    break
                await asyncio.sleep(0.01)
            assert all(report.ok for report in reports) and guard.checks == 2  # the first, and one re-check waiting
        for _ in range(200):
            if not (await guard.current()).ok:
                break
            await asyncio.sleep(0.05)
        report = await guard.current()
        assert not report.ok and any("conversations.deleted_at" in p for p in report.problems)
        await guard.aclose()


async def test_requests_on_a_stale_mismatch_wait_for_one_check(settings: Settings, db: psycopg.Connection) -> None:
    """A mismatch is checked again in the request path (a repaired database is served at once), and
    requests that come during that check share it rather than each making one of its own."""
    async with create_pool(settings) as pool:
        db.execute("ALTER TABLE conversations DROP COLUMN deleted_at")
        guard = CountedGuard(pool, interval=0.05)
        assert not (await guard.refresh()).ok
        await asyncio.to_thread(migrate, settings.require_database_url())
        await asyncio.sleep(0.1)
        reports = await asyncio.gather(*(guard.current() for _ in range(10)))
        assert all(report.ok for report in reports) and guard.checks == 2
        await guard.aclose()
