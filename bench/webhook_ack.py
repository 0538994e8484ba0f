"""Webhook answer time and wake latency, measured in one run.

    python3 bootstrap.py waypost --version >/dev/null  # once, to build .venv
    .venv/bin/python -m bench.webhook_ack [--posts 400] [--concurrency 8]

Starts an embedded PostgreSQL, `waypost serve` and one `waypost worker` as subprocesses, then
drives signed webhooks from this process over HTTP on 127.0.0.1 and prints one table:
  - answer time of POST /api/webhooks/whatsapp (new message each time), sequential and concurrent;
  - answer time of GET /healthz on the same server (the floor), and the ratio;
  - wake latency: webhook transaction commit -> reply task start in the worker (from the DB clock).
Results are appended to bench/results/webhook_ack.txt with the machine's description.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from tests import payloads
from waypost import embedded_pg
from waypost.schema import migrate

SECRET = "bench-secret"
RESULTS = Path(__file__).parent / "results" / "webhook_ack.txt"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(name: str, samples_ms: list[float]) -> tuple[str, float, float, int]:
    return name, statistics.median(samples_ms), percentile(samples_ms, 0.99), len(samples_ms)


def post_one(client: httpx.Client, i: int, prefix: str) -> float:
    body = payloads.dumps(payloads.inbound(payloads.text_message(f"bench {i}", wa_id=f"{prefix}{i % 50:04d}")))
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(SECRET, body)}
    started = time.perf_counter()
    response = client.post("/api/webhooks/whatsapp", content=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def get_health(client: httpx.Client) -> float:
    started = time.perf_counter()
    client.get("/healthz").raise_for_status()
    return (time.perf_counter() - started) * 1000


def concurrent_run(base: str, count: int, concurrency: int, fn) -> list[float]:
    clients = [httpx.Client(base_url=base, timeout=30) for _ in range(concurrency)]
    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda i: fn(clients[i % concurrency], i), range(count)))
    finally:
        for client in clients:
            client.close()


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="waypost-bench-"))
    pg = embedded_pg.start(workdir / "pg", delete_on_exit=True)
    database_url = pg.create_database("bench")
    migrate(database_url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WHATSAPP_APP_SECRET": SECRET,
        "WHATSAPP_VERIFY_TOKEN": "bench",
        "WAYPOST_PORT": str(port),
        "WAYPOST_LOG_LEVEL": "WARNING",
    }
    waypost = [sys.executable, "-m", "waypost.cli"]
    web = subprocess.Popen([*waypost, "serve"], env=env)
    worker = subprocess.Popen([*waypost, "worker"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/readyz")
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(20):  # warm up connections and caches
                post_one(client, i, "9")
                get_health(client)
            health = [get_health(client) for _ in range(args.posts)]
            sequential = [post_one(client, i, "1") for i in range(args.posts)]
        parallel = concurrent_run(base, args.posts, args.concurrency, lambda c, i: post_one(c, i, "2"))
        health_parallel = concurrent_run(base, args.posts, args.concurrency, lambda c, i: get_health(c))
        time.sleep(0.5)  # let the worker drain (wake latency is read from the database)
        # Wake latency on an idle worker: one post at a time, the worker idle before each.
        with httpx.Client(base_url=base, timeout=30) as client:
            idle_ids = []
            for i in range(50):
                time.sleep(0.05)
                post_one(client, i, "3")
                idle_ids.append(f"3{i % 50:04d}")
        time.sleep(1)
        with psycopg.connect(database_url) as conn:
            wake = [
                float(r[0])
                for r in conn.execute(
                    "SELECT EXTRACT(EPOCH FROM j.started_at - e.processed_at) * 1000 FROM outbound_jobs j "
                    "JOIN webhook_events e ON e.request_id = j.request_id "
                    "JOIN conversations c ON c.id = j.conversation_id "
                    "WHERE c.wa_id LIKE '3%%' AND j.started_at IS NOT NULL"
                )
            ]
    finally:
        for proc in (web, worker):
            proc.terminate()
            proc.wait(timeout=15)
        pg.stop()

    rows = [
        summarise("GET /healthz, sequential", health),
        summarise("POST webhook, sequential", sequential),
        summarise(f"GET /healthz, {args.concurrency} concurrent", health_parallel),
        summarise(f"POST webhook, {args.concurrency} concurrent", parallel),
        summarise("wake: commit -> task start (idle worker)", wake),
    ]
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {platform.node()} {platform.machine()} "
        f"{os.cpu_count()} cpu, Python {platform.python_version()}, everything on one machine",
        f"{'measurement':48} {'median ms':>10} {'p99 ms':>10} {'n':>6}",
    ]
    lines += [f"{name:48} {median:10.2f} {p99:10.2f} {n:6d}" for name, median, p99, n in rows]
    seq_ratio = rows[1][1] / rows[0][1]
    par_ratio = rows[3][1] / rows[2][1]
    lines.append(f"ratio webhook/healthz (median): sequential {seq_ratio:.1f}x, concurrent {par_ratio:.1f}x")
    report = "\n".join(lines)
    print(report)
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(report + "\n\n")


if __name__ == "__main__":
    main()
