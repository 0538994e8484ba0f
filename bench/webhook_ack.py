"""Webhook answer time and wake latency, measured in one run.

    .venv/bin/python -m bench.webhook_ack [--posts 400] [--concurrency 8]

Starts the stack (bench.common.stack: embedded PostgreSQL, fake Graph API, `waypost serve`, one
`waypost worker`, each its own process), then drives signed webhooks from this process over HTTP on
127.0.0.1 and prints one table:
  - answer time of POST /api/webhooks/whatsapp (new message each time), sequential and concurrent;
  - answer time of GET /healthz on the same server (the floor), and the ratio;
  - wake latency: webhook transaction commit -> reply task start in the worker (from the DB clock).
Results are appended to bench/results/webhook_ack.txt with the machine's description.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time
from collections.abc import Callable

import httpx

from bench.common import machine, percentile, report, signed_post, stack
from waypost.db import connect_sync, fetch_all_sync
from waypost.devtools import payloads


def summarise(name: str, samples_ms: list[float]) -> tuple[str, float, float, int]:
    return name, statistics.median(samples_ms), percentile(samples_ms, 0.99), len(samples_ms)


def post_one(client: httpx.Client, i: int, prefix: str) -> float:
    return signed_post(client, payloads.text_message(f"bench {i}", wa_id=f"{prefix}{i % 50:04d}"))


def get_health(client: httpx.Client) -> float:
    started = time.perf_counter()
    client.get("/healthz").raise_for_status()
    return (time.perf_counter() - started) * 1000


def concurrent_run(base: str, count: int, concurrency: int, fn: Callable[[httpx.Client, int], float]) -> list[float]:
    clients = [httpx.Client(base_url=base, timeout=30) for _ in range(concurrency)]
    try:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda i: fn(clients[i % concurrency], i), range(count)))
    finally:
        for client in clients:
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with stack() as running:
        base = running.web
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(20):  # warm up connections and caches
                post_one(client, i, "9")
                get_health(client)
            health = [get_health(client) for _ in range(args.posts)]
            sequential = [post_one(client, i, "1") for i in range(args.posts)]
        parallel = concurrent_run(base, args.posts, args.concurrency, lambda c, i: post_one(c, i, "2"))
        health_parallel = concurrent_run(base, args.posts, args.concurrency, lambda c, i: get_health(c))
        time.sleep(2)  # let the worker drain
        # Wake latency of an idle worker: one post at a time, the worker idle before each.
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(50):
                time.sleep(0.1)
                post_one(client, i, "3")
        time.sleep(1)
        with connect_sync(running.database_url) as conn:
            wake = [float(row["ms"]) for row in fetch_all_sync(conn, "bench_wake_ms", prefix="3")]

    rows = [
        summarise("GET /healthz, sequential", health),
        summarise("POST webhook, sequential", sequential),
        summarise(f"GET /healthz, {args.concurrency} concurrent", health_parallel),
        summarise(f"POST webhook, {args.concurrency} concurrent", parallel),
        summarise("wake: commit -> task start (idle worker)", wake),
    ]
    lines = [machine(), f"{'measurement':48} {'median ms':>10} {'p99 ms':>10} {'n':>6}"]
    lines += [f"{name:48} {median:10.2f} {p99:10.2f} {n:6d}" for name, median, p99, n in rows]
    seq_ratio = rows[1][1] / rows[0][1]
    par_ratio = rows[3][1] / rows[2][1]
    lines.append(f"ratio webhook/healthz (median): sequential {seq_ratio:.1f}x, concurrent {par_ratio:.1f}x")
    report("webhook_ack", lines)


if __name__ == "__main__":
    main()
