"""Scale: the key figures with 1 or 2 web processes (`waypost serve --workers 2`) and 1 or 2
`waypost worker` processes, and the PostgreSQL connections each configuration holds.

    .venv/bin/python -m bench.scale [--runs 3] [--rate 160] [--seconds 10] [--load 1000] [--no-record]

Each configuration gets a stack of its own; per run: mixed traffic at `rate` messages/s (+3x statuses,
bench/mixed.py) for `seconds`, then `load` messages as fast as 16 connections post them (replies/s).
A thread samples pg_stat_activity meanwhile: the peak of client connections is what the
configuration needs from max_connections.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import psycopg

from bench import mixed
from bench.common import WEBHOOK, Sampler, Stack, graph_sends, machine, report, stack, wait_drained
from bench.figures import HIGHER, LOWER, Figures
from bench.http import Client
from waypost.db import connect_sync, fetch_one_sync
from waypost.devtools import payloads

CONFIGS = ((1, 1), (2, 1), (1, 2), (2, 2))  # (web processes, workers)


class ConnectionPeak(Sampler):
    """The most client connections to the stack's database seen while the block runs (every 100 ms)."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url, interval=0.1)
        self.peak = self.max_connections = 0

    def take(self, conn: psycopg.Connection[Any]) -> None:
        row = fetch_one_sync(conn, "bench_connections")
        self.peak = max(self.peak, int(row["connections"]))
        self.max_connections = int(row["max_connections"])


def sustained(running: Stack, count: int) -> tuple[float, float]:
    """Replies per second: first POST -> last reply received, and the worker's own span (first job
    started -> last finished), for `count` messages posted as fast as 16 connections allow."""
    wamids: list[str] = []

    async def post_all() -> None:
        async with Client(running.web, max_connections=16) as client:
            queue = list(range(count))

            async def poster() -> None:
                while queue:
                    i = queue.pop()
                    message = payloads.text_message(f"load {i}", wa_id=f"8{i % 200:010d}")
                    wamids.append(message["id"])
                    body, headers = mixed.signed_payload(payloads.inbound(message))
                    await client.post(WEBHOOK, body, headers)

            await asyncio.gather(*(poster() for _ in range(16)))

    started = time.time()
    asyncio.run(post_all())
    wait_drained(running, timeout=300)
    received = graph_sends(running)
    last = max(received[w] for w in wamids if w in received)
    with connect_sync(running.database_url) as conn:
        span = fetch_one_sync(conn, "bench_reply_span", prefix="8")["seconds"]
    return count / (last - started), count / float(span)


def configuration(web: int, workers: int, rate: float, seconds: float, load: int) -> tuple[Figures, int, int]:
    """One run of one configuration: its figures, the peak connections and max_connections."""
    label = f" [{web} web, {workers} worker]"
    found = Figures()
    with stack(workers=workers, web_processes=web) as running:
        mixed.mixed(running, 20, 2)  # warm up: every process has its connections and caches
        with ConnectionPeak(running.database_url) as connections:
            result = mixed.mixed(running, rate, seconds)
            replies_per_s, _ = sustained(running, load)
    if connections.error is not None:  # said, as the thread's own traceback said it before
        print(f"peak PostgreSQL connections not measured{label}: {connections.error!r}", file=sys.stderr)
    found.merge(result.figures(label))
    found.add(f"sustained replies/s{label}", replies_per_s, "/s", HIGHER)
    found.add(f"peak PostgreSQL connections{label}", connections.peak, "", LOWER)
    return found, connections.peak, connections.max_connections


def table(runs: int, rate: float, seconds: float, load: int) -> tuple[list[str], Figures]:
    found, limit = Figures(), 0
    for web, workers in CONFIGS:
        for _ in range(runs):
            run_figures, _, limit = configuration(web, workers, rate, seconds, load)
            found.merge(run_figures)
            print(*run_figures.lines(), sep="\n", file=sys.stderr, flush=True)  # a long run's progress
    head = f"{'web':>3} {'wrk':>3} | {'ack msg p99':>11} {'ack st p99':>10} {'w2r p99':>8} {'answered':>8} | "
    head += f"{'replies/s':>9} | {'PG conns':>8}"
    lines = [f"## scale: mixed {rate:g} msgs/s + {3 * rate:g} statuses/s for {seconds:g} s, {load} for replies/s", head]
    for web, workers in CONFIGS:
        label = f" [{web} web, {workers} worker]"

        def med(name: str, label: str = label) -> float:
            return found[name.format(label)].median

        lines.append(
            f"{web:>3} {workers:>3} | {med('mixed{} ack message p99'):>8.1f} ms "
            f"{med('mixed{} ack status p99'):>7.1f} ms "
            f"{med('mixed{} webhook->reply p99'):>5.0f} ms {med('mixed{} replies answered'):>7.1f}% | "
            f"{med('sustained replies/s{}'):>7.0f}/s | {med('peak PostgreSQL connections{}'):>8.0f}"
        )
    lines.append(f"(medians of {runs} run(s); PostgreSQL max_connections here: {limit})")
    return lines, found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=160.0, help="inbound messages/s (statuses: 3x)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--load", type=int, default=1000, help="messages for the replies/s run")
    parser.add_argument("--no-record", action="store_true", help="print only (a dev run)")
    args = parser.parse_args()
    lines, found = table(args.runs, args.rate, args.seconds, args.load)
    report("scale", [machine(), *lines, "medians (min - max):", *found.lines()], record=not args.no_record)


if __name__ == "__main__":
    main()
