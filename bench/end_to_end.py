"""End to end: webhook POST -> the fake Graph API receiving the reply, at a steady rate.

    .venv/bin/python -m bench.end_to_end [--rate 50] [--seconds 20] [--workers 1]

Starts an embedded PostgreSQL, `waypost serve`, N `waypost worker` (rules provider) and the fake
Graph API, each its own process; this process posts signed webhooks on a fixed schedule (open loop:
a slow answer does not slow the schedule), each from its own contact, then joins every post with
the send the fake received (by context.message_id) and prints the latency distribution.
Results are appended to bench/results/end_to_end.txt.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.webhook_ack import SECRET, free_port, percentile, wait_for
from tests import payloads
from waypost import embedded_pg
from waypost.schema import migrate

RESULTS = Path(__file__).parent / "results" / "end_to_end.txt"
TOKEN = "bench-token"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="waypost-e2e-"))
    pg = embedded_pg.start(workdir / "pg", delete_on_exit=True)
    database_url = pg.create_database("bench")
    migrate(database_url)
    web_port, graph_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WHATSAPP_APP_SECRET": SECRET,
        "WHATSAPP_VERIFY_TOKEN": "bench",
        "WHATSAPP_ACCESS_TOKEN": TOKEN,
        "WHATSAPP_API_BASE": f"http://127.0.0.1:{graph_port}",
        "WAYPOST_PORT": str(web_port),
        "WAYPOST_LOG_LEVEL": "WARNING",
    }
    python = sys.executable
    procs = [
        subprocess.Popen([python, "-m", "waypost.fake_graph", "--port", str(graph_port), "--access-token", TOKEN]),
        subprocess.Popen([python, "-m", "waypost.cli", "serve"], env=env),
        *(subprocess.Popen([python, "-m", "waypost.cli", "worker"], env=env) for _ in range(args.workers)),
    ]
    base = f"http://127.0.0.1:{web_port}"
    total = int(args.rate * args.seconds)
    posted: dict[str, float] = {}
    try:
        wait_for(f"{base}/readyz")
        time.sleep(1)  # workers up
        client = httpx.Client(base_url=base, timeout=30)

        def post(i: int) -> None:
            message = payloads.text_message(f"what are your opening hours? {i}", wa_id=f"3460{i:07d}")
            body = payloads.dumps(payloads.inbound(message))
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(SECRET, body)}
            posted[message["id"]] = time.time()
            client.post("/api/webhooks/whatsapp", content=body, headers=headers).raise_for_status()

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
        received: dict[str, float] = {}
        while time.monotonic() < deadline and len(received) < total:
            time.sleep(0.5)
            sends = httpx.get(f"http://127.0.0.1:{graph_port}/_fake/requests", timeout=30).json()
            received = {r["body"]["context"]["message_id"]: r["at"] for r in sends if r["accepted"]}
        client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)
        pg.stop()

    latencies = [(received[wamid] - at) * 1000 for wamid, at in posted.items() if wamid in received]
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {platform.node()} {platform.machine()} {os.cpu_count()} cpu, "
        f"Python {platform.python_version()}, everything on one machine; rules provider, {args.workers} worker(s), "
        f"concurrency 10",
        f"target rate {args.rate:.0f}/s, achieved {achieved:.1f}/s, {total} messages, "
        f"{len(latencies)} replies received ({total - len(latencies)} missing)",
        f"webhook POST -> fake Graph API receives the reply: median {statistics.median(latencies):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms",
    ]
    report = "\n".join(lines)
    print(report)
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(report + "\n\n")


if __name__ == "__main__":
    main()
