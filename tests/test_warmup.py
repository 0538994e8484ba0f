"""The web process and the worker warm their pools' connections at start (webhook/warmup.py,
worker/warmup.py): the webhook statements, or a reply's, run on each in a transaction rolled back.
Nothing is written and nothing is notified; a warm-up that fails never stops the start."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Awaitable, Callable, Iterator

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.conftest import WebServer, post_webhook, wait_until
from waypost.db import Pool, create_pool
from waypost.devtools import payloads
from waypost.settings import Settings
from webhook import warmup
from webhook.app import warmup_connections
from webhook.group_commit import GroupCommit
from worker import warmup as worker_warmup

TABLES = (
    "webhook_events",
    "conversations",
    "messages",
    "outbound_jobs",
    "procrastinate_jobs",
    "procrastinate_events",
    "procrastinate_workers",
    "message_statuses",
)
# What the worker's warm-up runs on each connection: its made-up job deferred, taken (and the reply
# started) by the fetch under a made-up worker, claimed, and ended by the send's record.
WORKER_FUNCTIONS = (
    "procrastinate_defer_jobs_v1",
    "procrastinate_register_worker_v1",
    "waypost_fetch_jobs_v1",
    "waypost_try_start_reply_v1",
    "waypost_start_reply_v2",
    "waypost_claim_send_v2",
    "waypost_record_send_v2",
    "procrastinate_finish_job_v1",
)


def rows(db: psycopg.Connection) -> dict[str, int]:
    return {table: db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"] for table in TABLES}


def ids_used(db: psycopg.Connection, table: str = "webhook_events") -> int:
    """How many ids of `table` were taken so far, rolled back or not: a sequence is not transactional."""
    row = db.execute(f"SELECT last_value, is_called FROM {table}_id_seq").fetchone()
    return row["last_value"] if row["is_called"] else 0


def nothing_notified(db: psycopg.Connection, listener: psycopg.Connection) -> None:
    """The first notification to arrive is the test's own, sent now."""
    db.execute("NOTIFY waypost_inbox, 'after the warm-up'")
    assert next(listener.notifies(timeout=10)).payload == "after the warm-up"


def refuse_warm_up(db: psycopg.Connection, table: str) -> None:
    """The warm-up's rows refused by the database: a trigger on `table` raises for its request id."""
    db.execute(
        "CREATE FUNCTION test_refuse_warm_up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.request_id = 'warm-up' THEN RAISE EXCEPTION 'no warm-up here'; END IF; RETURN NEW; END $$"
    )
    db.execute(
        f"CREATE TRIGGER test_refuse_warm_up BEFORE INSERT ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION test_refuse_warm_up()"
    )


def counting_calls(db: psycopg.Connection) -> None:
    """The test database's sessions count their function calls (pg_stat_user_functions)."""
    name = db.execute("SELECT current_database() AS name").fetchone()["name"]
    db.execute(sql.SQL("ALTER DATABASE {} SET track_functions = 'all'").format(sql.Identifier(name)))


def calls(db: psycopg.Connection, expected: dict[str, int]) -> None:
    """Until the functions' call counts are `expected`: a session reports its counts when it ends, and
    `warmed` closed its pool."""

    def counted() -> bool:
        db.execute("SELECT pg_stat_clear_snapshot()")
        rows = db.execute(
            "SELECT funcname, calls FROM pg_stat_user_functions WHERE funcname = ANY(%s)", [list(expected)]
        ).fetchall()
        return {row["funcname"]: row["calls"] for row in rows} == expected

    wait_until(counted, what=f"the calls {expected}")


def warmed(settings: Settings, warm: Callable[[Pool], Awaitable[list[int]]]) -> list[int]:
    """`warm` on a pool of the tests' settings; the backend pids it warmed."""

    async def run() -> list[int]:
        async with create_pool(settings) as pool:
            await pool.wait(timeout=20)  # its connections open: none opens while it warms
            return await warm(pool)

    return asyncio.run(run())


def later(
    settings: Settings, warm: Callable[[Pool], Awaitable[list[int]]], between: Callable[[], object] | None = None
) -> tuple[list[int], int]:
    """`warm` on a pool of the tests' settings, at start (its first connection open), then `between`, then
    one connection more, opened with nobody waiting for it (a replacement past max_lifetime, say): the pids
    warmed at start, and the new connection's pid, taken once it is in the pool."""

    async def run() -> tuple[list[int], int]:
        async with create_pool(settings) as pool:
            await pool.wait(timeout=20)
            pids = await warm(pool)
            if between is not None:
                await asyncio.to_thread(between)
            size = pool.get_stats()["pool_size"]
            held = [await pool.getconn() for _ in range(size)]
            there = {conn.info.backend_pid for conn in held}
            for conn in held:
                await pool.putconn(conn)
            await pool.resize(size + 1, max(pool.max_size, size + 1))
            await pool.wait(timeout=20)  # the new one is in the pool, warmed or not
            held = [await pool.getconn() for _ in range(size + 1)]
            try:
                [new] = [conn for conn in held if conn.info.backend_pid not in there]
                await new.execute("SELECT 1")  # handed out idle, and it works
                return pids, new.info.backend_pid
            finally:
                for conn in held:
                    await pool.putconn(conn)

    return asyncio.run(run())


def web_warm_up(settings: Settings, connections: int) -> Callable[[Pool], Awaitable[list[int]]]:
    return lambda pool: warmup.warm_up(
        pool, GroupCommit(pool, settings.turn_window, settings.webhook_statements), connections
    )


@contextlib.contextmanager
def leaving_nothing(db: psycopg.Connection, database_url: str) -> Iterator[None]:
    """The block's warm-ups, their functions' calls counted (`calls`): they leave no row, and notify nothing
    (the first notification to arrive after them is the test's own)."""
    before = rows(db)
    counting_calls(db)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN waypost_inbox")
        listener.execute("LISTEN procrastinate_any_queue_v1")
        yield
        assert rows(db) == before
        nothing_notified(db, listener)


def test_each_connection_runs_both_statements_and_nothing_is_written_or_notified(
    db: psycopg.Connection, database_url: str, settings: Settings
) -> None:
    with leaving_nothing(db, database_url):
        pids = warmed(settings, web_warm_up(settings, 3))
        # three connections, each a different backend, each ran the three webhooks (one alone, two in a group)
        assert len(set(pids)) == 3
        assert ids_used(db) == 3 * 3
        # each status's message first (an echo), so that each status is applied: found, and moved on
        calls(
            db,
            {
                "waypost_store_webhook_v3": 3 * 3,
                "waypost_store_webhooks_v1": 3,
                "waypost_ingest_inbound_message_v5": 9,
                "waypost_ingest_echo_v2": 9,
                "waypost_advance_message_status_v2": 9,
            },
        )


def test_the_web_process_warms_up_before_it_takes_requests(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="webhook.warmup")
    assert warmup_connections(settings) == 2  # the tests' pool opens 1, and the webhook statements are 2
    with WebServer(settings):
        assert ids_used(db) == 2 * 3
    lines = [r.getMessage().split(" in ")[0] for r in caplog.records if r.name == "webhook.warmup"]
    # a connection still opening when the warm-up began warms itself, and says so, before the start's line
    assert lines[-1] == "warmed 2 database connections"
    assert all(line.startswith("warmed a new database connection") for line in lines[:-1])


def test_a_warm_up_that_fails_never_stops_the_start(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused by the database (here a trigger): the process starts, says so, and stores webhooks."""
    refuse_warm_up(db, "webhook_events")
    with WebServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        body = payloads.dumps(payloads.inbound(payloads.text_message("hello", wa_id="15550001111")))
        assert post_webhook(client, body).status_code == 200
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone()["n"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "webhook.warmup" and r.levelname == "WARNING"]
    [start] = [w for w in warnings if "of the database connections" in w]
    assert "given up after 0 of 2" in start and "no warm-up here" in start
    # a connection still opening when the warm-up began tries on its own, refused as well
    assert all("a new database connection given up" in w for w in warnings if w != start)


def test_the_worker_runs_a_reply_on_each_connection_and_nothing_is_written_or_notified(
    db: psycopg.Connection, database_url: str, settings: Settings
) -> None:
    with leaving_nothing(db, database_url):
        pids = warmed(settings, lambda pool: worker_warmup.warm_up(pool, settings, 2))
        assert len(set(pids)) == 2
        calls(db, dict.fromkeys(WORKER_FUNCTIONS, 2))
        # on each: the turn's message and the reply's claim, its job (the record and the rest write no new row)
        assert ids_used(db, "messages") == 2 * 2 and ids_used(db, "outbound_jobs") == 2
        assert ids_used(db, "procrastinate_jobs") == 2


def test_the_worker_warms_up_before_its_first_fetch(db: psycopg.Connection, start_worker) -> None:
    worker = start_worker()  # ready: listening, so past the warm-up
    log = worker.log_path.read_text()
    # the pool's first connection, and the one it opened while the worker waited for that (waypost.db.Pool.open)
    [warm] = re.findall(r"warmed (\d+) database connections", log)
    assert ids_used(db, "messages") == 2 * int(warm) and int(warm) in (1, 2)
    assert "Deferred" not in log  # the made-up job, never committed, is never said to be queued


def test_a_worker_warm_up_that_fails_is_given_up(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    refuse_warm_up(db, "outbound_jobs")
    assert warmed(settings, lambda pool: worker_warmup.warm_up(pool, settings, 1)) == []
    [warning] = [r.getMessage() for r in caplog.records if r.name == "worker.warmup" and r.levelname == "WARNING"]
    assert "given up after 0 of 1" in warning and "no warm-up here" in warning


def test_a_connection_opened_later_is_warmed_before_it_is_handed_out(
    db: psycopg.Connection, database_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection the pool opens later (growing, or replacing one past its max_lifetime) is a cold
    session: it runs the warm-up's statements first, rolled back as at start."""
    caplog.set_level("INFO", logger="webhook.warmup")
    with leaving_nothing(db, database_url):
        pids, new = later(settings, web_warm_up(settings, 1))
        assert len(pids) == 1 and new not in pids
        assert ids_used(db) == 2 * 3  # the three webhooks at start, and again on the new connection
        calls(db, {"waypost_store_webhook_v3": 2 * 3, "waypost_store_webhooks_v1": 2})
    lines = [r.getMessage().split(" in ")[0] for r in caplog.records if r.name == "webhook.warmup"]
    assert lines == ["warmed 1 database connections", f"warmed a new database connection (backend {new})"]


def test_a_connection_opened_for_a_waiting_request_is_handed_to_it_at_once_cold(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting for a warm-up would cost the request more than the cold statements do."""
    caplog.set_level("INFO", logger="webhook.warmup")

    async def run() -> tuple[list[int], int]:
        async with create_pool(settings) as pool:
            await pool.wait(timeout=20)
            pids = await web_warm_up(settings, 1)(pool)
            held = [await pool.getconn() for _ in range(pool.get_stats()["pool_size"])]
            try:
                async with pool.connection() as conn:  # none is free: the pool opens one for this request
                    await conn.execute("SELECT 1")
                    return pids, conn.info.backend_pid
            finally:
                for conn in held:
                    await pool.putconn(conn)

    pids, new = asyncio.run(run())
    assert new not in pids and ids_used(db) == len(pids) * 3  # the start's warm-ups only
    assert not [r for r in caplog.records if "a new database connection" in r.getMessage()]


def test_the_worker_warms_a_connection_opened_later(db: psycopg.Connection, settings: Settings) -> None:
    counting_calls(db)
    pids, new = later(settings, lambda pool: worker_warmup.warm_up(pool, settings, 1))
    assert len(pids) == 1 and new not in pids
    calls(db, dict.fromkeys(WORKER_FUNCTIONS, 2))
    assert ids_used(db, "messages") == 2 * 2


def test_a_warm_up_that_failed_at_start_is_not_run_on_later_connections(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    refuse_warm_up(db, "webhook_events")
    pids, _ = later(settings, web_warm_up(settings, 1))
    assert pids == [] and ids_used(db) == 1  # the start's one attempt, refused; none on the new connection
    warnings = [r.getMessage() for r in caplog.records if r.name == "webhook.warmup" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "given up after 0 of 1" in warnings[0]


def test_a_later_connection_whose_warm_up_fails_is_handed_out_unwarmed(
    db: psycopg.Connection, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused after the start (here a trigger added then): logged, and the connection serves."""
    pids, new = later(
        settings,
        lambda pool: worker_warmup.warm_up(pool, settings, 1),
        between=lambda: refuse_warm_up(db, "outbound_jobs"),
    )
    assert len(pids) == 1 and new not in pids
    [warning] = [r.getMessage() for r in caplog.records if r.name == "worker.warmup" and r.levelname == "WARNING"]
    assert "a new database connection given up" in warning and "no warm-up here" in warning


def test_a_later_warm_up_waits_for_no_lock_for_long(
    db: psycopg.Connection, database_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock its rows need (here the journal's, as a migration holds it) makes a new connection's warm-up
    give up after WARM_UP_LOCK_SECONDS, not its whole bound: the connection is handed out unwarmed."""
    seen: list[str] = []

    def waiting_warm_up() -> bool:
        row = db.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE '%store_webhook%'"
        ).fetchone()
        if row:
            seen.append(row["application_name"])
        return bool(row)

    with psycopg.connect(database_url) as locker:
        watcher = threading.Thread(target=lambda: wait_until(waiting_warm_up, what="the warm-up waiting at the lock"))
        pids, new = later(
            settings,
            web_warm_up(settings, 1),
            between=lambda: (locker.execute("LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE"), watcher.start()),
        )
        watcher.join()
        locker.rollback()
    assert len(pids) == 1 and new not in pids
    assert seen == ["waypost-warm-up"]  # what psql shows while it waits
    [warning] = [r.getMessage() for r in caplog.records if r.name == "webhook.warmup" and r.levelname == "WARNING"]
    assert "a new database connection given up" in warning and "LockNotAvailable" in warning
