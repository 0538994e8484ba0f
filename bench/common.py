"""Helpers shared by the benchmarks: ports, percentiles, readiness, the results files, and a thread that
samples PostgreSQL while a run goes on."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs installed; a test dependency (pyproject)
import psycopg

from waypost.db import connect_sync, fetch_one_sync, fetch_optional_sync
from waypost.devtools import embedded_pg, payloads
from waypost.devtools.net import free_port, wait_until_ready
from waypost.devtools.processes import poll, stop_processes, workers_listening
from waypost.schema import migrate

RESULTS_DIR = Path(__file__).parent / "results"


class Sampler:
    """A thread that calls `take(conn)` every `interval` seconds, on a connection of its own to
    `database_url`, from `with` until the block ends (or `stop()`). What stopped it early is kept in
    `error`: the run it sits beside keeps its figures."""

    def __init__(self, database_url: str, interval: float, connect_timeout: int = 10) -> None:
        self._url = database_url
        self._interval = interval
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self.error: Exception | None = None

    def take(self, conn: psycopg.Connection[Any]) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Sampling ends (it may end before the block does; a second call does nothing)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            with connect_sync(self._url, autocommit=True, connect_timeout=self._connect_timeout) as conn:
                while not self._stop.is_set():
                    self.take(conn)
                    self._stop.wait(self._interval)
        except Exception as exc:
            self.error = exc


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine(note: str = "") -> str:
    """A header line describing when and where the figures below it were measured."""
    return (
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {platform.node()} {platform.machine()} {os.cpu_count()} cpu, "
        f"Python {platform.python_version()}, everything on one machine" + (f"; {note}" if note else "")
    )


def report(name: str, lines: list[str], record: bool = True) -> None:
    """Print the report and append it to bench/results/NAME.txt (unless `record` is false: a dev run)."""
    text = "\n".join(lines)
    print(text)
    if not record:
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    with (RESULTS_DIR / f"{name}.txt").open("a") as out:
        out.write(text + "\n\n")


SECRET = "bench-secret"
WEBHOOK = "/api/webhooks/whatsapp"
ACCESS_TOKEN = "bench-token"
# the inbox on, for the benchmarks that open it in a browser (bench.inbox_live, bench.mixed --inbox-page)
INBOX_SESSION_SECRET = "bench-session-secret-0123456789abcdef"


@contextlib.contextmanager
def stack(workers: int = 1, web_processes: int = 1, **extra_env: str) -> Iterator[Stack]:
    """Embedded PostgreSQL, the fake Graph API, `waypost serve` (with `web_processes` processes sharing
    the port) and N `waypost worker`, each a process."""
    pg = embedded_pg.start(Path(tempfile.mkdtemp(prefix="waypost-bench-")) / "pg", delete_on_exit=True)
    database_url = pg.create_database("bench")
    migrate(database_url)
    web_port, graph_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WHATSAPP_APP_SECRET": SECRET,
        "WHATSAPP_VERIFY_TOKEN": "bench",
        "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
        "WHATSAPP_API_BASE": f"http://127.0.0.1:{graph_port}",
        "WAYPOST_PORT": str(web_port),
        "WAYPOST_LOG_LEVEL": "WARNING",
        # one reply per message, at once, so figures stay comparable with earlier runs (bench/turns.py
        # measures the quiet window)
        "WAYPOST_TURN_QUIET_SECONDS": "0",
        **extra_env,
    }
    python = sys.executable
    procs = [
        subprocess.Popen(
            [python, "-m", "waypost.devtools.fake_graph", "--port", str(graph_port), "--access-token", ACCESS_TOKEN]
        ),
        subprocess.Popen([python, "-m", "waypost.cli", "serve", "--workers", str(web_processes)], env=env),
        *(subprocess.Popen([python, "-m", "waypost.cli", "worker"], env=env) for _ in range(workers)),
    ]
    try:
        running = Stack(
            database_url, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{graph_port}", env=env, processes=procs
        )
        wait_until_ready(running.web)
        with psycopg.connect(database_url, autocommit=True) as conn:
            poll(lambda: workers_listening(conn) >= workers, timeout=30, what="the workers did not start listening")
        yield running
    finally:
        stop_processes(procs)
        pg.stop()


@dataclasses.dataclass(frozen=True)
class Stack:
    database_url: str
    web: str
    graph: str
    # for a scenario that kills and restarts them (bench/pywa_side.py): what it appends is stopped at the end too
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    processes: list[subprocess.Popen] = dataclasses.field(default_factory=list)
    # the named query that finds a reply still to be sent at `web` (wait_drained): bench/durable_floor.py has its own
    open_query: str = "bench_outbound_open"


def signed_post(client: httpx.Client, message: dict) -> float:
    """POST one inbound message, signed; returns the answer time in ms."""
    body = payloads.dumps(payloads.inbound(message))
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(SECRET, body)}
    started = time.perf_counter()
    client.post("/api/webhooks/whatsapp", content=body, headers=headers).raise_for_status()
    return (time.perf_counter() - started) * 1000


def cpu_seconds(database_url: str) -> dict[str, float]:
    """CPU seconds used so far by each part of the stack: this process's children (web, worker, fake
    Graph API, the durable floor's processes) and the PostgreSQL server's processes, with what their
    exited children used (an autovacuum worker, a closed connection's backend: the postmaster reaps
    them). A figure per unit of work that a busy machine (other processes taking the cores) does not
    inflate the way it inflates wall time."""
    with connect_sync(database_url, autocommit=True) as conn:
        data_dir = Path(fetch_one_sync(conn, "bench_data_directory")["data_directory"])
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    parts = {"postgres": [postmaster, *postmaster.children()]}
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            parts.setdefault(_part(" ".join(child.cmdline())), []).extend([child, *child.children(recursive=True)])
    used: dict[str, float] = {}
    for part, processes in parts.items():
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                times = process.cpu_times()
                used[part] = (
                    used.get(part, 0.0) + times.user + times.system + times.children_user + times.children_system
                )
    return used


def _part(command: str) -> str:
    if "cli worker" in command:
        return "worker"
    if "cli serve" in command:
        return "web"
    if "playwright" in command:  # the driver of bench.mixed --inbox-page's Chromium, with its processes
        return "browser"
    return "floor" if "durable_floor" in command else "fake graph"


def wait_drained(running: Stack, timeout: float = 120) -> None:
    """Until no reply is still to be sent: the worker has drained the queue (the stack's `open_query`
    finds none)."""
    deadline = time.monotonic() + timeout
    with connect_sync(running.database_url, autocommit=True) as conn:
        while fetch_optional_sync(conn, running.open_query):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not drain the queue")
            time.sleep(0.2)


def graph_sends(running: Stack) -> dict[str, float]:
    """Accepted sends by the inbound message they answer, with the time the fake received them."""
    requests = httpx.get(f"{running.graph}/_fake/requests", timeout=30).json()
    return {r["body"]["context"]["message_id"]: r["at"] for r in requests if r["accepted"]}
