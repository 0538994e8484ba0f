"""Mixed traffic: inbound messages, each answered, plus the status webhooks of the replies sent.

    .venv/bin/python -m bench.mixed [--seconds 60] [--rate 80] [--runs 3] [--search 1,1.5,2,3,4] [--floor]
        [--inbox-page] [--waits] [--no-record]

Starts the stack (bench.common.stack) and drives, from this process, open loop (each latency counted
from the request's scheduled time):
  - `rate` inbound text messages per second, each from one of a rotating set of contacts (each writes
    again only after 10 s, so every message is a turn of its own and gets its own reply);
  - for every reply the fake Graph API accepted (read from `GET /_fake/requests?from=N` every 100 ms),
    its `sent`, `delivered` and `read` status webhooks, 100, 200 and 300 ms after it was seen: 3 per
    reply, so 240/s at 80 messages/s. The bench's fake posts no statuses itself (no --auto-statuses),
    so none is counted twice.
Prints POST ack median/p99 by kind, replies sent (exactly once each), webhook -> reply median/p99,
against the goals (ack p99 < 50 ms, webhook -> reply p99 < 250 ms), the driver's own CPU, each part of
the stack's CPU per inbound message (its reply and statuses included) with the cores busy, and with
--search the highest multiple of the rate held (shorter runs, one stack); with --waits, where PostgreSQL's
busy backends waited (bench/waits.py). With --floor the same traffic
goes to bench/durable_floor.py instead (its statuses one statement each, like Waypost's): what any design
that commits each webhook before its 200 holds on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import os
import statistics
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from bench.common import (
    INBOX_SESSION_SECRET,
    SECRET,
    WEBHOOK,
    Stack,
    cpu_seconds,
    machine,
    percentile,
    report,
    stack,
    wait_drained,
)
from bench.figures import HIGHER, LOWER, DriverCost, Figures
from bench.http import Client
from bench.waits import WaitSampler
from waypost.devtools import payloads

ACK_GOAL_MS = 50.0
REPLY_GOAL_MS = 250.0
STATUSES = ("sent", "delivered", "read")
_runs = itertools.count(1)  # each run's contacts are new: a wa_id prefix of its own


@dataclasses.dataclass
class MixedRun:
    rate: float
    seconds: float
    acks: dict[str, list[float]]
    errors: collections.Counter[str]  # "message 503", "status 599" (599: no answer, the connection failed)
    lags: list[float]  # how late the driver sent each request (ms): large if the driver is the limit
    posted: dict[str, float]  # inbound wamid -> when it was due to be posted (wall clock)
    replies: collections.Counter[str]  # inbound wamid -> replies accepted by the fake
    reply_ms: list[float]
    status_rate: float
    cost: DriverCost
    # CPU seconds each part of the stack used over the run and its drain (bench.common.cpu_seconds), and
    # the wall seconds they were used over: where the cores went
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    cpu_wall: float = 0.0

    @property
    def expected(self) -> int:
        return len(self.posted)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.replies.values() if n > 1)

    def held(self) -> bool:
        return (
            not sum(self.errors.values())
            and len(self.replies) == self.expected
            and not self.duplicates
            and all(percentile(a, 0.99) < ACK_GOAL_MS for a in self.acks.values())
            and percentile(self.reply_ms, 0.99) < REPLY_GOAL_MS
        )

    def lines(self) -> list[str]:
        out = [
            f"mixed {self.rate:g} messages/s + their replies' statuses (target {3 * self.rate:g}/s, achieved "
            f"{self.status_rate:.0f}/s) for {self.seconds:g} s:"
        ]
        for kind, acks in self.acks.items():
            codes = ", ".join(f"{n} x {key.split()[1]}" for key, n in self.errors.items() if key.startswith(kind))
            errors = f", errors: {codes}" if codes else ""
            out.append(
                f"  ack {kind}: median {statistics.median(acks):.1f} ms, p99 {percentile(acks, 0.99):.1f} ms "
                f"(goal < {ACK_GOAL_MS:.0f}), {len(acks)} posts{errors}"
            )
        out.append(
            f"  replies: {len(self.replies)} of {self.expected} messages answered, {self.duplicates} answered twice"
        )
        if self.reply_ms:
            out.append(
                f"  webhook -> reply: median {statistics.median(self.reply_ms):.1f} ms, p99 "
                f"{percentile(self.reply_ms, 0.99):.1f} ms (goal < {REPLY_GOAL_MS:.0f})"
            )
        requests = sum(len(a) for a in self.acks.values())
        out.append(f"  {self.cost.line(requests)}; send lag p99 {percentile(self.lags, 0.99):.1f} ms")
        if self.cpu:
            out.append(self.cpu_line())
        return out

    def cpu_per_message(self) -> dict[str, float]:
        """Each part's CPU milliseconds per inbound message, its reply and its statuses included."""
        return {part: seconds * 1000 / max(1, self.expected) for part, seconds in sorted(self.cpu.items())}

    def cpu_line(self) -> str:
        """Where the cores went: near all of them, a slower minute of the machine is queueing (the
        latencies above grow far more than the CPU per message does)."""
        per = self.cpu_per_message()
        driver = self.cost.cpu / max(self.cost.wall, 1e-9)
        return (
            "  CPU per message (its reply and statuses): "
            + ", ".join(f"{part} {ms:.2f} ms" for part, ms in per.items())
            + f"; {self.served()} {self.waypost_cpu_ms():.2f} ms; cores busy: stack "
            + f"{sum(self.cpu.values()) / max(self.cpu_wall, 1e-9):.2f} + driver {driver:.2f} of {os.cpu_count()}"
        )

    def served(self) -> str:
        """Who answered the traffic: Waypost, or the durable floor (--floor) beside an idle Waypost."""
        return "floor" if "floor" in self.cpu else "Waypost"

    def waypost_cpu_ms(self) -> float:
        """Web, worker and PostgreSQL, or with --floor the floor's processes and PostgreSQL: not the fake
        Graph API (Meta's stand-in)."""
        left_out = {"fake graph", "browser", "web", "worker"} if self.served() == "floor" else {"fake graph", "browser"}
        return sum(ms for part, ms in self.cpu_per_message().items() if part not in left_out)

    def figures(self, label: str = "") -> Figures:
        found = Figures()
        for kind, acks in self.acks.items():
            found.add(f"mixed{label} ack {kind} p50", statistics.median(acks), "ms", LOWER)
            found.add(f"mixed{label} ack {kind} p99", percentile(acks, 0.99), "ms", LOWER)
        found.add(f"mixed{label} webhook->reply p50", statistics.median(self.reply_ms or [1e9]), "ms", LOWER)
        found.add(f"mixed{label} webhook->reply p99", percentile(self.reply_ms or [1e9], 0.99), "ms", LOWER)
        found.add(f"mixed{label} replies answered", len(self.replies) / max(1, self.expected) * 100, "%", HIGHER)
        if self.cpu:
            found.add(f"mixed{label} {self.served()} CPU per message", self.waypost_cpu_ms(), "ms", LOWER)
        return found


def answering(sends: list[dict[str, Any]], posted: dict[str, float]) -> list[dict[str, Any]]:
    """The sends the fake accepted that answer one of the `posted` messages."""
    return [r for r in sends if r["accepted"] and (r["body"].get("context") or {}).get("message_id") in posted]


def signed_payload(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = payloads.dumps(payload)
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(SECRET, body)}


async def drive(running: Stack, rate: float, seconds: float, grace: float = 60.0) -> MixedRun:
    loop = asyncio.get_running_loop()
    run = next(_runs)
    contacts = max(100, int(rate * 10))
    count = int(rate * seconds)
    # bodies and signatures made before the clock starts: the driver's work during the run is sending
    messages = [payloads.text_message(f"mixed {run} {i}", wa_id=f"2{run:03d}{i % contacts:07d}") for i in range(count)]
    bodies = [signed_payload(payloads.inbound(m)) for m in messages]
    acks: dict[str, list[float]] = {"message": [], "status": []}
    errors: collections.Counter[str] = collections.Counter()
    lags: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    replies: collections.Counter[str] = collections.Counter()
    reply_ms: list[float] = []
    status_times: list[float] = []

    async with Client(running.web, max_connections=256) as client, Client(running.graph, 1) as graph:

        async def post(kind: str, signed: tuple[bytes, dict[str, str]], scheduled: float) -> None:
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            lags.append((loop.time() - scheduled) * 1000)
            try:
                status = await client.post(WEBHOOK, signed[0], signed[1])
            except (OSError, asyncio.IncompleteReadError):
                status = 599
            acks[kind].append((loop.time() - scheduled) * 1000)
            if status >= 400:
                errors[f"{kind} {status}"] += 1

        with DriverCost() as cost:
            start = loop.time() + 0.05
            wall_start = time.time() + (start - loop.time())
            posted = {m["id"]: wall_start + i / rate for i, m in enumerate(messages)}
            tasks += [loop.create_task(post("message", b, start + i / rate)) for i, b in enumerate(bodies)]
            seen, interval = 0, 0.1
            # poll the fake's sends until every message is answered (or the grace after the last POST ends)
            while len(replies) < count and loop.time() < start + seconds + grace:
                await asyncio.sleep(interval)
                new = await graph.get_json(f"/_fake/requests?from={seen}")
                seen += len(new)
                now = loop.time()
                ours = answering(new, posted)
                for j, sent in enumerate(ours):
                    inbound = sent["body"]["context"]["message_id"]
                    replies[inbound] += 1
                    if replies[inbound] > 1:
                        continue
                    reply_ms.append((sent["at"] - posted[inbound]) * 1000)
                    for k, status in enumerate(STATUSES):
                        at = now + interval * (k + 1 + j / len(ours))
                        status_times.append(at)
                        item = payloads.status(sent["wa_message_id"], status, recipient_id=sent["body"]["to"])
                        tasks.append(loop.create_task(post("status", signed_payload(payloads.statuses(item)), at)))
            await asyncio.gather(*tasks)
    span = max(status_times) - min(status_times) if len(status_times) > 1 else 0.0
    return MixedRun(
        rate,
        seconds,
        acks,
        errors,
        lags,
        posted,
        replies,
        reply_ms,
        len(status_times) / span if span else 0.0,
        cost,
    )


def mixed(running: Stack, rate: float, seconds: float, page: InboxPage | None = None) -> MixedRun:
    before = cpu_seconds(running.database_url)
    if page is None:
        result = asyncio.run(drive(running, rate, seconds))
    else:
        result = page.while_open(lambda: asyncio.run(drive(running, rate, seconds)))
    draining = time.monotonic()
    wait_drained(running)
    # the cores over the driven span and the drain (not the bodies' making, before the clock starts)
    after, result.cpu_wall = cpu_seconds(running.database_url), result.cost.wall + time.monotonic() - draining
    result.cpu = {part: used - before.get(part, 0.0) for part, used in after.items()}
    # a late reply or duplicate would show in the fake's log after the last poll: count from the whole log
    first: dict[str, float] = {}
    result.replies = collections.Counter()
    for send in answering(httpx.get(f"{running.graph}/_fake/requests", timeout=30).json(), result.posted):
        inbound = send["body"]["context"]["message_id"]
        result.replies[inbound] += 1
        first[inbound] = min(first.get(inbound, send["at"]), send["at"])
    result.reply_ms = [(at - result.posted[inbound]) * 1000 for inbound, at in first.items()]
    return result


def search(
    running: Stack, rate: float, multiples: list[float], seconds: float, page: InboxPage | None = None
) -> tuple[list[str], float]:
    """Each multiple of `rate` in turn, for `seconds`; stops at the first not held. The highest held."""
    lines, best = [], 0.0
    for multiple in multiples:
        result = mixed(running, rate * multiple, seconds, page)
        held = result.held()
        lines.append(f"{multiple:g}x ({'held' if held else 'NOT held'}) " + result.lines()[0])
        lines += result.lines()[1:]
        if page is not None:
            lines.append(page.line())
        if not held:
            break
        best = multiple
    lines.append(f"highest multiple of {rate:g} messages/s + {3 * rate:g} statuses/s held: {best:g}x")
    return lines, best


@dataclasses.dataclass
class InboxPage:
    """One operator's /inbox open in headless Chromium while the traffic runs (--inbox-page): what
    watching a busy number costs. The browser stands for the operator's own computer but shares these
    cores: its CPU is counted apart ("browser"), not as Waypost's."""

    page: Any
    fetches: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def while_open(self, run: Callable[[], MixedRun]) -> MixedRun:
        """`run` (the driver) in a thread, while this thread lets the page work (Playwright's sync API
        delivers its events only while it is called)."""
        self.page.wait_for_timeout(1)  # what the page fetched before (the last run's drain) is delivered
        self.fetches.clear()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            driving = pool.submit(run)
            while not driving.done():
                self.page.wait_for_timeout(100)
            return driving.result()

    def line(self) -> str:
        self.page.wait_for_timeout(1)  # and what it fetched during the drain
        counted = ", ".join(f"{path} {n}" for path, n in self.fetches.most_common())
        return f"  the inbox page open meanwhile fetched: {counted or 'nothing'}"


@contextlib.contextmanager
def inbox_page(running: Stack) -> Iterator[InboxPage]:
    # imported here: Playwright and Chromium only for this option
    from playwright.sync_api import sync_playwright

    from bench.inbox_live import open_inbox

    with sync_playwright() as playwright:
        browser, page = open_inbox(playwright, running)
        watched = InboxPage(page)
        page.on("request", lambda request: watched.fetches.update([urllib.parse.urlsplit(request.url).path]))
        try:
            yield watched
        finally:
            browser.close()


def parse_multiples(text: str) -> list[float]:
    return [float(m) for m in text.split(",") if m.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=80.0, help="inbound messages/s (statuses: 3x that)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--web-processes", type=int, default=1)
    parser.add_argument("--search", type=parse_multiples, default=[], help="multiples to try, e.g. 1,1.5,2,3,4")
    parser.add_argument("--search-seconds", type=float, default=10.0)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="drive bench/durable_floor.py instead of Waypost: could any durable design hold this rate here",
    )
    parser.add_argument(
        "--inbox-page",
        action="store_true",
        help="an operator's /inbox open in headless Chromium throughout (what watching a busy number costs)",
    )
    parser.add_argument(
        "--waits",
        action="store_true",
        help="sample where PostgreSQL's busy backends wait during each run (bench/waits.py)",
    )
    parser.add_argument("--no-record", action="store_true", help="print only (a dev run)")
    args = parser.parse_args()
    if args.floor and args.inbox_page:
        parser.error("--inbox-page watches Waypost's inbox: not with --floor")

    what = f"{args.workers} worker(s), {args.web_processes} web process(es)"
    if args.inbox_page:
        what += ", an operator's /inbox open in headless Chromium"
    if args.floor:
        what = "the durable floor (bench/durable_floor.py), not Waypost"
    figures, lines = Figures(), [machine(what)]
    for _ in range(args.runs):
        with contextlib.ExitStack() as scope:
            # the floor needs the stack's PostgreSQL and fake Graph API only: Waypost's web process idles
            workers, web_processes = (0, 1) if args.floor else (args.workers, args.web_processes)
            inbox = {"WAYPOST_SESSION_SECRET": INBOX_SESSION_SECRET} if args.inbox_page else {}
            running = scope.enter_context(stack(workers=workers, web_processes=web_processes, **inbox))
            page = scope.enter_context(inbox_page(running)) if args.inbox_page else None
            if args.floor:
                # imported here: the floor shares pywa's bot (the bench extra), a run of Waypost does not
                from bench import durable_floor

                floor = scope.enter_context(durable_floor.serving(running))
                running = dataclasses.replace(running, web=floor, open_query="bench_floor_open")
            waits = scope.enter_context(WaitSampler(running.database_url)) if args.waits else None
            result = mixed(running, args.rate, args.seconds, page)
            lines += result.lines()
            if waits is not None:
                waits.stop()  # the run and its drain only, not the search
                lines.append(waits.line())
            if page is not None:
                lines.append(page.line())
            figures.merge(result.figures())
            if args.search:
                search_lines, best = search(running, args.rate, args.search, args.search_seconds, page)
                lines += search_lines
                figures.add("mixed highest multiple held", best, "x", HIGHER)
    report("mixed", [*lines, "medians:", *figures.lines()], record=not args.no_record)


if __name__ == "__main__":
    main()
