"""Shared fixtures: one embedded PostgreSQL per session, a fresh migrated database per test (dropped
after it), the web app under uvicorn on 127.0.0.1, the fake Graph API for tests that send, and worker
subprocesses. Each test gets a tier marker from what it uses (pytest_collection_modifyitems; the
markers are described in pyproject.toml and README "Test")."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import procrastinate
import psycopg
import pytest
import uvicorn
from procrastinate.worker import Worker
from psycopg.rows import dict_row
from starlette.types import ASGIApp

from waypost.devtools import embedded_pg, payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.devtools.processes import poll, stop_processes, workers_listening
from waypost.environment import environment
from waypost.schema import migrate
from waypost.settings import Settings
from webhook.app import create_app
from worker.resilience import WaypostWorker

APP_SECRET = "test-app-secret"
ACCESS_TOKEN = "test-access-token"
CRON_SECRET = "test-cron-secret"
VERIFY_TOKEN = "test-verify-token"
SESSION_SECRET = "test-session-secret-0123456789abcdef"
TEMPLATE = "waypost_template"
# Where a test that does not start the fake Graph API sends: a closed port, so a send fails at once.
NO_GRAPH_API = "http://127.0.0.1:9"
_counter = itertools.count()
# Fixtures that bring up PostgreSQL or a server: a test using any of them is not a unit test.
INTEGRATION_FIXTURES = {"pg", "own_postgres", "database_url", "fake_graph", "start_worker"}
# Modules that start servers or subprocesses without those fixtures.
INTEGRATION_MODULES = {"test_dev", "test_lint", "test_fake_graph"}
# Tests that start a server of their own (a fake OpenAI API under ServerThread).
INTEGRATION_TESTS = ("test_orchestrator.py::test_openai_provider_",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if "faults" in path.parts:
            tier = "faults"
        elif path.stem == "test_inbox_browser" or "browser" in getattr(item, "fixturenames", ()):
            tier = "browser"
        elif (
            INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))
            or path.stem in INTEGRATION_MODULES
            or any(name in item.nodeid for name in INTEGRATION_TESTS)
        ):
            tier = "integration"
        else:
            tier = "unit"
        item.add_marker(tier)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded_pg.EmbeddedPostgres]:
    server = embedded_pg.start(tmp_path_factory.mktemp("pg") / "data", delete_on_exit=True)
    migrate(server.create_database(TEMPLATE))
    yield server
    server.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[embedded_pg.EmbeddedPostgres]:
    """A PostgreSQL of the test's own, for restarting it without touching the session's."""
    server = embedded_pg.start(tmp_path / "own-pg" / "data", delete_on_exit=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(pg: embedded_pg.EmbeddedPostgres) -> Iterator[str]:
    """A database of its own for each test, cloned from the migrated template, dropped after it
    (as procrastinate's db_factory does): the session's end has no pile of databases to stop."""
    name = f"test_{os.getpid()}_{next(_counter)}"
    yield pg.create_database(name, template=TEMPLATE)
    pg.drop_database(name)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """The test's database in autocommit, rows as tuples (`db` gives dicts)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def fake_graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(access_token=ACCESS_TOKEN, app_secret=APP_SECRET)
    with ServerThread(fake.app) as server:
        fake.url = server.url
        yield fake


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str) -> Settings:
    # Only a test that may send (it asks for the fake or for a worker) starts the fake Graph API.
    uses_fake = "fake_graph" in request.fixturenames
    api_base = request.getfixturevalue("fake_graph").url if uses_fake else NO_GRAPH_API
    return Settings(
        database_url=database_url,
        whatsapp_app_secret=APP_SECRET,
        whatsapp_verify_token=VERIFY_TOKEN,
        whatsapp_access_token=ACCESS_TOKEN,
        whatsapp_api_base=api_base,
        cron_secret=CRON_SECRET,
        db_pool_min_size=1,
        db_pool_max_size=8,
        send_connect_timeout=1.0,
        send_read_timeout=2.0,
        retry_base_seconds=0.2,
        worker_poll_interval=0.5,
        session_secret=SESSION_SECRET,
        media_hosts=("127.0.0.1",),  # the fake Graph API serves media files
        turn_quiet_seconds=0,  # one reply per message, at once (tests/test_turns.py sets a window)
    )


class ServerThread:
    """A real ASGI app under uvicorn on 127.0.0.1, in a thread of this process."""

    def __init__(self, app: ASGIApp, **config_options: Any) -> None:
        # At exit, a request still open after a second is cancelled: a hanging fake Graph API call or
        # an inbox page's event stream (ended by SIGTERM under `waypost serve`, never signalled in a
        # thread) would otherwise hold the teardown for the join's 10 s.
        options = {
            "host": "127.0.0.1",
            "port": 0,
            "log_config": None,
            "lifespan": "on",
            "timeout_graceful_shutdown": 1,
            **config_options,
        }
        config = uvicorn.Config(app, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class WebServer(ServerThread):
    """The app as `waypost serve` runs it: uvicorn trusts no proxy header, the app decides."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings), proxy_headers=False)


@pytest.fixture
def web(request: pytest.FixtureRequest, settings: Settings) -> Iterator[WebServer]:
    with WebServer(settings) as server:
        if "fake_graph" in request.fixturenames:  # the fake posts its status webhooks here
            request.getfixturevalue("fake_graph").webhook_url = server.url + "/api/webhooks/whatsapp"
        yield server


@pytest.fixture
def client(web: WebServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, timeout=10) as http:
        yield http


def post_webhook(
    client: httpx.Client, body: bytes, secret: str | None = APP_SECRET, **headers: str | bytes
) -> httpx.Response:
    sent: dict[str, str | bytes] = {"Content-Type": "application/json", **headers}
    if secret is not None:
        sent["X-Hub-Signature-256"] = payloads.sign(secret, body)
    return client.post("/api/webhooks/whatsapp", content=body, headers=sent)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess read exactly these settings."""
    return environment(settings)


def waypost_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WAYPOST_", "WHATSAPP_", "OPENAI_", "CRON_", "DATABASE_URL"))
    }
    return {**env, **settings_env(settings), "PYTHONUNBUFFERED": "1", **extra}


def wait_until(condition: Callable[[], Any], timeout: float = 20, what: str = "a condition") -> Any:
    """Poll until `condition()` is truthy; its value. For waits on a busy machine: never a fixed sleep."""
    return poll(condition, timeout=timeout, what=f"timed out waiting for {what}", interval=0.02, error=AssertionError)


def settled(db: psycopg.Connection, timeout: float = 20) -> None:
    """Until no reply job is queued or running and no send is open: from then on nothing is sent by
    itself, so a test may count what was sent (instead of sleeping and hoping it was long enough). Not
    the read receipt's plain call after an immediate answer: it follows the send's record, which ended
    the job (worker.job_end); wait for its outcome (tests/test_receipts.py)."""
    wait_for(
        db,
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queue_name = 'replies'"
        "                            AND status IN ('todo', 'doing'))"
        " AND NOT EXISTS (SELECT 1 FROM outbound_jobs WHERE status IN ('gathering', 'pending', 'running'))"
        " AND NOT EXISTS (SELECT 1 FROM messages WHERE status IN ('sending', 'unknown'))",
        timeout=timeout,
    )


def wait_for(db: psycopg.Connection, sql: str, params: list | None = None, timeout: float = 20) -> dict:
    """Poll until the query returns a row; that row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute(sql, params or []).fetchone()
        if row:
            return row  # type: ignore[return-value]
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {sql}")


def run_waypost(
    settings: Settings, *args: str, stdin: str | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "waypost.cli", *args],
        env=waypost_env(settings, **extra_env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


class WorkerProcess:
    """`waypost worker` in a subprocess, its output collected to a file."""

    def __init__(self, settings: Settings, log_path: Path, **extra_env: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.started_at = dt.datetime.now(dt.UTC)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "waypost.cli", "worker"],
            env=waypost_env(settings, **extra_env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.database_url = settings.require_database_url()

    def wait_ready(self, timeout: float = 20, listeners: int = 1, *, own: bool = False) -> None:
        """Ready once `listeners` workers LISTEN for jobs on this database (this one among them); with
        `own`, once a LISTEN connection opened since this worker started is there (other workers'
        connections stop showing LISTEN once they have pinged)."""
        probe = "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN %%procrastinate%%' AND backend_start >= %s"
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            poll(
                lambda: (
                    conn.execute(probe, [self.started_at]).fetchone() if own else workers_listening(conn) >= listeners
                ),
                timeout=timeout,
                what=lambda: f"worker not ready in {timeout}s:\n{self.output()}",
                interval=0.05,
                alive=self._alive,
            )

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_processes([self.proc])
        self._log.close()


@contextlib.asynccontextmanager
async def running_worker(
    app: procrastinate.App, concurrency: int, poll: float, worker_class: type[Worker] = WaypostWorker
) -> AsyncIterator[Worker]:
    """`worker_class` on `app`, running in this event loop until the block ends; then stopped, which
    returns once its jobs have ended and their ends are written."""
    worker = worker_class(
        app=app, concurrency=concurrency, fetch_job_polling_interval=poll, install_signal_handlers=False
    )
    running = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await running


@pytest.fixture
def start_worker(settings: Settings, fake_graph: FakeGraph, tmp_path: Path) -> Iterator:
    """Workers send: asking for them brings up the fake Graph API (settings point at it)."""
    workers: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker{len(workers)}.log", **extra_env)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
