"""The benchmark suite: every figure measured in one run, printed as one table.

    python3 bootstrap.py bench [--workers 1] [--seconds 3] [--runs 3] [--mixed] [--scale] [--check] [--no-record]

Starts its own embedded PostgreSQL, the web app under uvicorn (`waypost serve`), N `waypost worker`
and the fake Graph API, each its own process, and drives signed webhooks from this process:
  - webhook answer time (median, p99) at fixed rates, open loop (latency counted from each request's
    scheduled time, so a lagging server cannot hide), beside GET /healthz at the same rate; the highest
    rate held with p99 under 50 ms;
  - wake latency: webhook commit -> reply task start, idle worker;
  - end to end at 50/s: webhook POST -> the fake Graph API receiving the reply;
  - sustained throughput: replies per second with the `rules` provider, beside procrastinate's own
    no-op jobs per second on the same server, measured right before and right after the replies (the
    ratio is to their mean: this machine's speed drifts by up to 2x within minutes);
  - a burst of 5 messages in one conversation: first POST -> fifth reply received;
  - with a quiet window (a stack of its own, bench/turns.py): bursts of 5 answered by one reply each,
    last message -> reply minus the window.
With --mixed, mixed traffic (bench/mixed.py) on each run's stack; with --scale, the 1 vs 2 web
processes / workers table (bench/scale.py). Each figure is the median of --runs runs, with min-max;
--check compares the medians with bench/results/baseline.json (bench/figures.py).
Results are appended, with the machine's description, to bench/results/suite.txt (not with --no-record).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

from bench import figures, mixed, scale, turns
from bench.common import SECRET, WEBHOOK, Stack, graph_sends, machine, percentile, report, stack, wait_drained
from bench.figures import HIGHER, LOWER, DriverCost, Figures
from bench.http import Client
from bench.yardstick import sustained_beside_noop
from waypost.db import connect_sync, fetch_all_sync
from waypost.devtools import payloads

RATES = (50, 100, 150, 200, 300, 400, 500, 700, 1000)
FIXED = (50, 200, 500)
P99_GOAL_MS = 50.0
DRIVER = DriverCost()  # the driver's own CPU over every open-loop run
LAGS: list[float] = []  # how late the driver sent each open-loop request, ms


def signed(message: dict) -> tuple[bytes, dict[str, str]]:
    body = payloads.dumps(payloads.inbound(message))
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(SECRET, body)}


async def open_loop(
    base: str, rate: float, seconds: float, request: Callable[[Client, int], Awaitable[int]]
) -> tuple[list[float], float, int]:
    """Latencies (ms, from each request's scheduled time), the rate achieved, and the errors. The
    driver's CPU goes to DRIVER, how late it sent each request (its own lag) to LAGS."""
    latencies: list[float] = []
    errors = 0
    async with Client(base, max_connections=256) as client:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        count = int(rate * seconds)

        async def one(i: int) -> None:
            nonlocal errors
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            LAGS.append((loop.time() - scheduled) * 1000)
            try:
                status = await request(client, i)
            except (OSError, asyncio.IncompleteReadError):
                status = 599
            latencies.append((loop.time() - scheduled) * 1000)
            errors += status >= 400

        with DRIVER:
            await asyncio.gather(*(one(i) for i in range(count)))
        achieved = count / (loop.time() - start)
    return latencies, achieved, errors


async def post_message(client: Client, message: dict) -> int:
    body, headers = signed(message)
    return await client.post(WEBHOOK, body, headers)


def rate_poster(prefix: str) -> Callable[[Client, int], Awaitable[int]]:
    """Posts message i from one of 500 senders whose numbers start with `prefix`."""

    def post(client: Client, i: int) -> Awaitable[int]:
        return post_message(client, payloads.text_message(f"rate {i}", wa_id=f"{prefix}{i % 500:05d}"))

    return post


def webhook_rates(running: Stack, seconds: float, found: Figures) -> tuple[list[str], int]:
    lines, best = [], 0
    for rate in RATES:
        posts, achieved, errors = asyncio.run(open_loop(running.web, rate, seconds, rate_poster(f"5{rate:04d}")))
        health, _, _ = asyncio.run(open_loop(running.web, rate, seconds, _health))
        p99 = percentile(posts, 0.99)
        held = p99 < P99_GOAL_MS and achieved >= 0.95 * rate and not errors
        best = rate if held else best
        if rate in FIXED:
            found.add(f"webhook at {rate}/s p50", statistics.median(posts), "ms", LOWER)
            found.add(f"webhook at {rate}/s p99", p99, "ms", LOWER)
            found.add(f"webhook at {rate}/s achieved", achieved, "/s", HIGHER)
        lines.append(
            f"webhook at {rate}/s (achieved {achieved:.0f}/s{f', {errors} errors' if errors else ''}): "
            f"median {statistics.median(posts):.1f} ms, p99 {p99:.1f} ms | /healthz same rate: median "
            f"{statistics.median(health):.1f} ms, p99 {percentile(health, 0.99):.1f} ms | ratio (median) "
            f"{statistics.median(posts) / statistics.median(health):.1f}x"
        )
        wait_drained(running)
        if not held and rate >= max(FIXED):
            break
    return lines, best


async def _health(client: Client, i: int) -> int:
    return (await client.request("GET", "/healthz"))[0]


def wake_latency(running: Stack) -> list[float]:
    """Commit -> reply task start, one message at a time to an idle worker (from the database clock)."""
    with httpx.Client(base_url=running.web, timeout=30) as client:
        for i in range(50):
            time.sleep(0.1)
            body, headers = signed(payloads.text_message(f"wake {i}", wa_id=f"6{i:010d}"))
            client.post(WEBHOOK, content=body, headers=headers).raise_for_status()
    wait_drained(running)
    with connect_sync(running.database_url) as conn:
        return [float(row["ms"]) for row in fetch_all_sync(conn, "bench_wake_ms", prefix="6")]


def end_to_end(running: Stack, rate: float, seconds: float) -> list[float]:
    posted: dict[str, float] = {}

    async def post(client: Client, i: int) -> int:
        message = payloads.text_message(f"e2e {i}", wa_id=f"7{i:010d}")
        posted[message["id"]] = time.time()
        return await post_message(client, message)

    asyncio.run(open_loop(running.web, rate, seconds, post))
    wait_drained(running)
    received = graph_sends(running)
    return [(received[wamid] - at) * 1000 for wamid, at in posted.items() if wamid in received]


def burst(running: Stack) -> float:
    """Five messages of one conversation, posted back to back: first POST -> fifth reply received."""
    messages = [payloads.text_message(f"burst {i}", wa_id="99000000001") for i in range(5)]
    started = time.time()
    with httpx.Client(base_url=running.web, timeout=30) as client:
        for message in messages:
            body, headers = signed(message)
            client.post(WEBHOOK, content=body, headers=headers).raise_for_status()
    deadline = time.monotonic() + 60
    while True:
        received = graph_sends(running)
        if all(m["id"] in received for m in messages):
            return (max(received[m["id"]] for m in messages) - started) * 1000
        assert time.monotonic() < deadline, "the burst was not answered"
        time.sleep(0.05)


def measure(args: argparse.Namespace) -> tuple[list[str], Figures]:
    """One run of the suite on a stack of its own: its report lines and figures."""
    found = Figures()
    with stack(workers=args.workers) as running:
        with httpx.Client(base_url=running.web, timeout=30) as client:  # warm up
            for i in range(20):
                body, headers = signed(payloads.text_message(f"warm {i}", wa_id=f"4{i:010d}"))
                client.post(WEBHOOK, content=body, headers=headers).raise_for_status()
        wait_drained(running)
        rate_lines, best = webhook_rates(running, args.seconds, found)
        progress("webhook rates measured")
        wake = wake_latency(running)
        e2e = end_to_end(running, 50, 10)
        burst_ms = burst(running)
        sustained = sustained_beside_noop(running, args.load)
        progress("wake latency, end to end, burst and sustained (beside no-op jobs) measured")
        extra = mixed_figures(running, args, found) if args.mixed else []
    found.add("highest webhook rate held (p99 < 50 ms)", best, "/s", HIGHER)
    found.add("wake latency p50", statistics.median(wake), "ms", LOWER)
    found.add("wake latency p99", percentile(wake, 0.99), "ms", LOWER)
    found.add("end to end at 50/s p50", statistics.median(e2e), "ms", LOWER)
    found.add("end to end at 50/s p99", percentile(e2e, 0.99), "ms", LOWER)
    found.add("burst of 5: all replies sent", burst_ms, "ms", LOWER)
    found.add("sustained replies/s", sustained.replies_per_s, "/s", HIGHER)
    found.add("procrastinate no-op jobs/s", sustained.noop_per_s, "/s", HIGHER)
    found.add("ratio replies / no-op jobs", sustained.ratio, "", HIGHER)
    lines = [
        *rate_lines,
        f"highest rate held with webhook p99 < {P99_GOAL_MS:.0f} ms: {best}/s",
        f"wake latency, commit -> reply task start (idle worker): median {statistics.median(wake):.1f} ms, "
        f"p99 {percentile(wake, 0.99):.1f} ms",
        f"end to end at 50/s, POST -> fake Graph API receives the reply: median {statistics.median(e2e):.1f} ms, "
        f"p99 {percentile(e2e, 0.99):.1f} ms ({len(e2e)} of 500)",
        f"burst of 5 messages in one conversation: all 5 replies sent {burst_ms:.0f} ms after the first POST",
        sustained.line(),
        *extra,
    ]
    return lines, found


def progress(text: str) -> None:
    """Where a long run is, on stderr (the report goes to stdout at the end)."""
    print(f"{time.strftime('%H:%M:%S')} bench: {text}", file=sys.stderr, flush=True)


def mixed_figures(running: Stack, args: argparse.Namespace, found: Figures) -> list[str]:
    """--mixed: mixed traffic for --mixed-seconds, then the multiples of --search (shorter runs)."""
    result = mixed.mixed(running, args.mixed_rate, args.mixed_seconds)
    found.merge(result.figures())
    lines = result.lines()
    if args.search:
        search_lines, best = mixed.search(running, args.mixed_rate, args.search, args.search_seconds)
        found.add("mixed highest multiple held", best, "x", HIGHER)
        lines += search_lines
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="per fixed-rate run")
    parser.add_argument("--load", type=int, default=1000, help="messages for the throughput run")
    parser.add_argument("--runs", type=int, default=3, help="each figure is the median of this many runs")
    parser.add_argument("--mixed", action="store_true", help="add mixed traffic (bench/mixed.py)")
    parser.add_argument("--mixed-rate", type=float, default=80.0, help="inbound messages/s (statuses: 3x)")
    parser.add_argument("--mixed-seconds", type=float, default=60.0)
    parser.add_argument("--search", type=mixed.parse_multiples, default=[], help="with --mixed: e.g. 1,1.5,2,3,4")
    parser.add_argument("--search-seconds", type=float, default=10.0)
    parser.add_argument("--scale", action="store_true", help="add the 1 vs 2 web processes / workers table")
    parser.add_argument("--scale-seconds", type=float, default=10.0)
    parser.add_argument("--scale-multiple", type=float, default=2.0, help="of --mixed-rate, in each configuration")
    parser.add_argument("--check", action="store_true", help="compare with bench/results/baseline.json")
    parser.add_argument("--save-baseline", action="store_true", help="write this run's medians as the baseline")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/results/suite.txt")
    args = parser.parse_args()

    found, lines = Figures(), [machine(f"{args.workers} worker(s) at concurrency 10, rules provider, {args.runs} runs")]
    for run in range(1, args.runs + 1):
        run_lines, run_figures = measure(args)
        lines += [f"## run {run}", *run_lines]
        found.merge(run_figures)
        progress(f"run {run} of {args.runs} done:\n" + "\n".join(run_lines))
    lines += ["## the quiet window (one run)", *turns.measure(20, 1.0)[1:]]
    if args.scale:
        rate = args.mixed_rate * args.scale_multiple
        scale_lines, scale_figures = scale.table(args.runs, rate, args.scale_seconds, args.load)
        lines += scale_lines
        found.merge(scale_figures)
    lines += [
        "## figures: median of the runs (min - max)",
        *found.lines(),
        f"{DRIVER.line(len(LAGS))}; send lag p99 {percentile(LAGS, 0.99):.1f} ms (how late it sent a request: "
        "small means it kept its schedule, so a slow answer is the server's)",
    ]
    ok = True
    if args.check:
        check_lines, ok = figures.check(found)
        lines += check_lines
    report("suite", lines, record=not args.no_record)
    if args.save_baseline:
        figures.save_baseline(found)
        print(f"baseline written to {figures.BASELINE}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
