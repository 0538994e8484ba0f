"""Fault injection: each scenario drives a stream of inbound messages through real processes while
something breaks, then checks the invariants (tests/faults/harness.py). Part of the test suite."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import ServerThread, WebServer, WorkerProcess, waypost_env
from tests.faults.harness import Driver, check_invariants, fault_settings, open_work, settle, sweep_now
from waypost.devtools import embedded_pg, payloads
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.devtools.net import free_port, wait_until_ready
from waypost.schema import migrate
from waypost.settings import Settings


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    """A fake Graph API that reports every accepted send back as sent, delivered and read."""
    fake = FakeGraph(access_token="test-access-token", app_secret="test-app-secret", auto_statuses=("sent",))
    with ServerThread(fake.app) as server:
        fake.url = server.url
        yield fake


def stack_settings(settings: Settings, graph: FakeGraph, **overrides: object) -> Settings:
    return fault_settings(settings, whatsapp_api_base=graph.url, **overrides)


def report(name: str, summary: dict[str, object]) -> None:
    print(f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


def test_worker_killed_with_sigkill_mid_send_repeatedly(settings: Settings, graph: FakeGraph, tmp_path: Path) -> None:
    settings = stack_settings(settings, graph)
    graph.script.extend(Behaviour(hang=0.3) for _ in range(400))  # every send is slow: kills land mid-send
    with WebServer(settings) as web:
        graph.webhook_url = web.url + "/api/webhooks/whatsapp"
        driver = Driver([web.url])
        # Two workers at all times: this one lives throughout; the other is killed mid-send, mid-turn.
        # One slot for this one: a fetch takes as many jobs as a worker has free slots, and with ten
        # it would take what was queued before the other could, leaving that one nothing to be killed in.
        steady = WorkerProcess(settings, tmp_path / "steady.log", WAYPOST_WORKER_CONCURRENCY="1")
        steady.wait_ready()
        feeding = threading.Thread(target=driver.run, args=(40, 10.0))
        feeding.start()
        kills = 0
        db = psycopg.connect(settings.require_database_url(), autocommit=True, row_factory=dict_row)

        def work_left() -> bool:  # messages still coming, or replies queued for a worker to take
            return feeding.is_alive() or open_work(db)["queued"] > 0

        mid_send = 0
        # At least one kill must land mid-send: on a busy machine the feed can end before a killed
        # worker took any job, so then a few more messages come for it (at most 12 kills in all).
        while feeding.is_alive() or kills < 4 or (not mid_send and kills < 12):
            worker = WorkerProcess(settings, tmp_path / f"worker{kills}.log")
            worker.wait_ready(own=True)
            if not feeding.is_alive() and not work_left():
                for i in range(4):
                    driver.deliver(payloads.dumps(payloads.inbound(driver.message(1000 + 4 * kills + i))))
            # Kill it mid-send: once it is sending, not after a guess at how long that takes (and
            # without waiting for a send that cannot come once nothing is left to send).
            deadline = time.monotonic() + 15
            swept = time.monotonic()
            while " send start " not in worker.output() and time.monotonic() < deadline and work_left():
                if time.monotonic() - swept > 1.0:  # as a cron would: jobs a kill left 'doing' go back
                    sweep_now(web.url)
                    swept = time.monotonic()
                time.sleep(0.02)
            time.sleep(random.uniform(0.0, 0.2))  # somewhere inside the 0.3 s the send takes
            mid_send += " send start " in worker.output()
            worker.proc.kill()  # SIGKILL: no cleanup, jobs left 'doing', sends in flight
            worker.proc.wait()
            kills += 1
        feeding.join()
        try:
            took = settle(settings.require_database_url(), web.url)
        finally:
            steady.stop()
            db.close()
    summary = check_invariants(settings.require_database_url(), graph, driver)
    with psycopg.connect(settings.require_database_url()) as conn:
        # jobs a kill interrupted: the sweep put them back ('doing' under a dead worker)
        interrupted = conn.execute(
            "SELECT count(DISTINCT e.job_id) FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id"
            " WHERE j.task_name = 'send_reply' AND e.type = 'deferred_for_retry'"
        ).fetchone()[0]  # type: ignore[index]
    report(f"SIGKILL x{kills}", {**summary, "jobs interrupted": interrupted, "settled in": f"{took:.1f}s"})
    assert interrupted > 0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_while_messages_flow(
    mode: str, own_postgres: embedded_pg.EmbeddedPostgres, settings: Settings, graph: FakeGraph, tmp_path: Path
) -> None:
    database_url = own_postgres.create_database("faults")
    migrate(database_url)
    settings = stack_settings(settings, graph, database_url=database_url)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.wait_ready()
    try:
        with WebServer(settings) as web:
            graph.webhook_url = web.url + "/api/webhooks/whatsapp"
            driver = Driver([web.url])
            feeding = threading.Thread(target=driver.run, args=(60, 15.0))
            feeding.start()
            time.sleep(1.5)
            own_postgres.restart(mode, down_seconds=1.0)
            feeding.join()
            took = settle(database_url, web.url)
            assert worker.proc.poll() is None, "the worker stopped"
    finally:
        worker.stop()
    summary = check_invariants(database_url, graph, driver, database_was_down=True)
    report(f"PostgreSQL {mode} restart", {**summary, "settled in": f"{took:.1f}s"})
    assert "worker wake-ups: listening again" in worker.output()


def test_listen_connection_terminated(
    settings: Settings, graph: FakeGraph, db: psycopg.Connection, tmp_path: Path
) -> None:
    settings = stack_settings(settings, graph, worker_poll_interval=30.0)  # a lost LISTEN would show
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.wait_ready()
    try:
        with WebServer(settings) as web:
            graph.webhook_url = web.url + "/api/webhooks/whatsapp"
            driver = Driver([web.url])
            feeding = threading.Thread(target=driver.run, args=(40, 20.0))
            feeding.start()
            for _ in range(3):
                time.sleep(0.6)
                db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %%procrastinate%%'"
                )
            feeding.join()
            took = settle(settings.require_database_url(), web.url, timeout=20)
    finally:
        worker.stop()
    summary = check_invariants(settings.require_database_url(), graph, driver)
    report("LISTEN terminated x3", {**summary, "settled in": f"{took:.1f}s"})


def test_graph_api_failing_30_percent_and_hanging(settings: Settings, tmp_path: Path) -> None:
    graph = FakeGraph(
        access_token="test-access-token",
        app_secret="test-app-secret",
        auto_statuses=("sent",),
        failure_rate=0.3,
        hang_rate=0.05,
        hang_seconds=2.0,  # past the 1 s read timeout: the outcome is unknown
        seed=7,
    )
    with ServerThread(graph.app) as server:
        graph.url = server.url
        settings = stack_settings(settings, graph)
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.wait_ready()
        try:
            with WebServer(settings) as web:
                graph.webhook_url = web.url + "/api/webhooks/whatsapp"
                driver = Driver([web.url])
                driver.run(60, 20.0)
                took = settle(settings.require_database_url(), web.url)
        finally:
            worker.stop()
        summary = check_invariants(settings.require_database_url(), graph, driver)
    failed = sum(1 for r in graph.requests if not r.accepted)
    report(
        "Graph API 30% errors + 5% hangs", {**summary, "failed or hung requests": failed, "settled in": f"{took:.1f}s"}
    )
    assert failed > 10


def test_duplicate_and_out_of_order_deliveries(settings: Settings, graph: FakeGraph, tmp_path: Path) -> None:
    settings = stack_settings(settings, graph, turn_quiet_seconds=0)  # one reply per message, as before turns
    graph.auto_statuses = ("sent", "delivered", "read")
    # Meta's statuses come back while the send's response is still on its way: before it is recorded.
    graph.script.extend(Behaviour(hang=0.3) for _ in range(100))
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.wait_ready()
    try:
        with WebServer(settings) as web:
            graph.webhook_url = web.url + "/api/webhooks/whatsapp"
            driver = Driver([web.url], conversations=5)
            messages = [driver.message(i) for i in range(30)]
            batches = [messages[i : i + 3] for i in range(0, 30, 3)]
            deliveries = [*batches, *batches[::2], *(batch[::-1] for batch in batches[1::2])]
            random.Random(3).shuffle(deliveries)  # redelivered, reordered, overlapping batches
            for batch in deliveries:
                driver.deliver(payloads.dumps(payloads.inbound(*batch)))
            took = settle(settings.require_database_url(), web.url)
            # and the statuses themselves redelivered, out of order, after the fact
            for record in graph.accepted()[:10]:
                for status in ("read", "sent", "delivered"):
                    body = payloads.dumps(payloads.statuses(payloads.status(record.wa_message_id, status)))
                    driver.deliver(body, counted=False)
    finally:
        worker.stop()
    summary = check_invariants(settings.require_database_url(), graph, driver)
    with psycopg.connect(settings.require_database_url()) as conn:
        statuses = conn.execute(
            "SELECT status, count(*) FROM messages WHERE direction = 'outbound' GROUP BY 1"
        ).fetchall()
    assert statuses == [("read", 30)], statuses  # forward only, whatever the order
    report("duplicates and reordering", {**summary, "deliveries": len(deliveries), "settled in": f"{took:.1f}s"})


def test_two_workers_and_two_web_processes(settings: Settings, graph: FakeGraph, tmp_path: Path) -> None:
    # Order holds for definite sends; a send whose outcome is unknown releases its conversation (the
    # at-least-once trade-off). A busy machine once made the fake Graph API answer past the 1 s read
    # timeout of the other scenarios: here nothing is meant to time out.
    settings = stack_settings(settings, graph, send_read_timeout=10.0)
    graph.script.extend(Behaviour(hang=0.05) for _ in range(400))
    ports = [free_port(), free_port()]
    webs = [
        subprocess.Popen(
            [sys.executable, "-m", "waypost.cli", "serve", "--port", str(port)],
            env=waypost_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    workers = [WorkerProcess(settings, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        for url in urls:
            wait_until_ready(url, timeout=20)
        workers[1].wait_ready(listeners=2)
        graph.webhook_url = urls[0] + "/api/webhooks/whatsapp"
        driver = Driver(urls, conversations=8)
        driver.run(80, 25.0, duplicates=True)  # each message to both web processes at once
        took = settle(settings.require_database_url(), urls[1])
    finally:
        for worker in workers:
            worker.stop()
        for web in webs:
            web.terminate()
            web.wait(timeout=15)
    summary = check_invariants(settings.require_database_url(), graph, driver)
    # replies of a conversation keep the order in which its messages were stored, across both workers
    with psycopg.connect(settings.require_database_url()) as conn:
        stored = [
            r[0] for r in conn.execute("SELECT wa_message_id FROM messages WHERE direction = 'inbound' ORDER BY id")
        ]
    order = {wamid: i for i, wamid in enumerate(stored)}
    for conversation in range(8):
        replied = [  # each turn's first message (a reply to several quotes none: its key names it)
            r.body["biz_opaque_callback_data"].removeprefix("reply:")
            for r in sorted(graph.accepted(), key=lambda r: r.at)
            if r.body["to"] == f"4930{conversation:07d}"
        ]
        assert replied == sorted(replied, key=order.__getitem__), conversation
    busy = [w.output().count("Starting job send_reply") for w in workers]
    report("2 web + 2 workers", {**summary, "replies per worker": busy, "settled in": f"{took:.1f}s"})
