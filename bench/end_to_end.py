"""End to end: webhook POST -> the fake Graph API receiving the reply, at a steady rate.

    .venv/bin/python -m bench.end_to_end [--rate 50] [--seconds 20] [--workers 1]

Starts the stack (bench.common.stack: embedded PostgreSQL, fake Graph API, `waypost serve`, N
`waypost worker` with the rules provider, each its own process); this process posts signed webhooks
on a fixed schedule (open loop: a slow answer does not slow the schedule), each from its own contact,
then joins every post with the send the fake received (by context.message_id).
Results are appended to bench/results/end_to_end.txt.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time

import httpx

from bench.common import machine, percentile, report, signed_post, stack
from waypost.devtools import payloads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    total = int(args.rate * args.seconds)
    posted: dict[str, float] = {}
    received: dict[str, float] = {}
    with stack(workers=args.workers) as running, httpx.Client(base_url=running.web, timeout=30) as client:

        def post(i: int) -> None:
            message = payloads.text_message(f"what are your opening hours? {i}", wa_id=f"3460{i:07d}")
            posted[message["id"]] = time.time()
            signed_post(client, message)

        start = time.monotonic() + 0.2
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = []
            for i in range(total):
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(post, i))
            for future in futures:
                future.result()
        achieved = total / (time.monotonic() - start)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(received) < total:
            time.sleep(0.5)
            sends = httpx.get(f"{running.graph}/_fake/requests", timeout=30).json()
            received = {r["body"]["context"]["message_id"]: r["at"] for r in sends if r["accepted"]}

    latencies = [(received[wamid] - at) * 1000 for wamid, at in posted.items() if wamid in received]
    report(
        "end_to_end",
        [
            machine(f"rules provider, {args.workers} worker(s), concurrency 10"),
            f"target rate {args.rate:.0f}/s, achieved {achieved:.1f}/s, {total} messages, "
            f"{len(latencies)} replies received ({total - len(latencies)} missing)",
            f"webhook POST -> fake Graph API receives the reply: median {statistics.median(latencies):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms",
        ],
    )


if __name__ == "__main__":
    main()
