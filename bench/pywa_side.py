"""pywa 4.5.0 beside Waypost in one run: the same driver, signed payloads, fake Graph API and HTTP client.

    .venv/bin/python -m bench.pywa_side [--runs 3] [--count 300] [--rate 20] [--concurrency 8]
        [--pywa sync|async] [--floor] [--no-save]

Needs the `bench` extra (`python3 bootstrap.py bench` installs it). Starts the stack (bench.common.stack:
embedded PostgreSQL, the fake Graph API, `waypost serve` and one `waypost worker`, rules provider, no quiet
window) and the pywa bot of bench/pywa_bot.py (its own process, uvicorn as `waypost serve` runs it,
replying to the same fake). Both answer the question with the same text, quoting the message. Per run,
side by side (the order alternates between runs):
  - the floor: GET on the same server (Waypost /healthz, pywa's webhook challenge), sequential;
  - ack: signed text-message POSTs, one client, keep-alive, sequential; then `--concurrency` clients;
  - webhook to reply: POSTs paced at `--rate`/s from one client, each message's send time to the time the
    fake received the reply quoting it (the fake stamps each request);
  - SIGKILL: 50 messages posted by 10 clients; right after the 50th ack every process of the side is
    SIGKILLed (Waypost: web and worker; pywa: its server), the side restarted (Waypost on the same
    database, the sweep run through the cron endpoint until no work is open) and left until quiet.
    Replies lost = 50 - messages answered at the fake; answered twice counted too. For Waypost the
    fake posts `sent` status webhooks as Meta does, and after the restart delivers them again for the
    sends it accepted (Meta redelivers webhooks that got no 200: the web process was dead).
With `--floor`, a third side in the same runs (ack and reply, no SIGKILL): bench/durable_floor.py, pywa's
kind of server plus one durable row before the 200 and a worker of its own, with the goals applied to it
too: what any design that commits before the 200 and replies from another process pays on this machine;
and procrastinate's own worker (bench.yardstick.procrastinate_wake), one job deferred at a time at `--rate`:
from its defer's return to its task's start, which a reply run as a procrastinate job waits on top of that.
Every message comes from its own contact, with phone number and BSUID (pywa 4.5 reads contacts[].user_id).
Each figure is the median of the runs with its spread; ratios are Waypost/pywa within a run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import psycopg

from bench import durable_floor
from bench.common import SECRET, Stack, machine, percentile, report, stack
from bench.pywa_bot import ENDPOINT, QUESTION, VERIFY_TOKEN, answer
from bench.yardstick import procrastinate_wake
from waypost.db import connect_sync, fetch_optional_sync
from waypost.devtools import payloads
from waypost.devtools.net import answers, free_port, wait_until_ready
from waypost.devtools.processes import poll, stop_processes, workers_listening

CRON_SECRET = "bench-cron"
# The SIGKILL scenario: a dead worker's job is retried 2 s after its last heartbeat (as in
# tests/faults/harness.py). A send the kill cut off is resent only when no `sent` status names it within
# its timeouts (5 + 20 + 5 s, the defaults: shorter ones make slow sends on a busy machine `unknown`) plus
# the grace: 60 s, not the default 600, yet long enough for the statuses redelivered after the restart
# (with 2 s, on a loaded machine, the resend came first and the contact got the reply twice).
WAYPOST_ENV = {"CRON_SECRET": CRON_SECRET, "WAYPOST_STALLED_WORKER_SECONDS": "2", "WAYPOST_UNKNOWN_GRACE_SECONDS": "60"}
KILLED = 50
DRIVER = "driver CPU per sequential POST, ms"
WAKE = "procrastinate"  # with --floor: the figures of procrastinate's own wake-up, in each run


@dataclasses.dataclass
class Side:
    """The processes of one contender, to kill and start again."""

    name: str
    url: str
    floor: str  # a GET the server answers without work
    commands: list[list[str]]
    env: dict[str, str]
    started: list[subprocess.Popen]  # every process ever started: stopped at the end
    live: list[subprocess.Popen]
    ready: Callable[[], None]
    open_work: Callable[[], bool] = lambda: False  # whether the side still has work it will do

    def kill(self) -> None:
        for proc in self.live:
            proc.kill()  # SIGKILL
        for proc in self.live:
            proc.wait()

    def restart(self) -> None:
        self.live = [subprocess.Popen(command, env=self.env) for command in self.commands]
        self.started.extend(self.live)
        self.ready()


def waypost_side(running: Stack) -> Side:
    python = sys.executable

    def ready() -> None:
        wait_until_ready(running.web)
        with psycopg.connect(running.database_url, autocommit=True) as conn:
            poll(lambda: workers_listening(conn) >= 1, timeout=30, what="the worker did not start listening")

    def open_work() -> bool:
        with httpx.Client(timeout=10) as client:
            client.post(
                running.web + "/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"}
            ).raise_for_status()
        with connect_sync(running.database_url, autocommit=True) as conn:
            return fetch_optional_sync(conn, "bench_outbound_open") is not None

    return Side(
        "Waypost",
        running.web,
        "/healthz",
        [[python, "-m", "waypost.cli", "serve"], [python, "-m", "waypost.cli", "worker"]],
        running.env,
        running.processes,
        running.processes[1:],  # [0] is the fake Graph API
        ready,
        open_work,
    )


def pywa_side(graph: str, flavour: str, started: list[subprocess.Popen]) -> Side:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    challenge = f"{ENDPOINT}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=ok"
    command = [sys.executable, "-m", "bench.pywa_bot", "--port", str(port), "--graph", graph, "--flavour", flavour]

    def ready() -> None:
        poll(lambda: answers(url + challenge), timeout=30, what="the pywa bot did not answer its webhook challenge")

    side = Side(f"pywa ({flavour})", url, challenge, [command], dict(os.environ), started, [], ready)
    side.restart()
    return side


def floor_side(running: Stack, started: list[subprocess.Popen]) -> Side:
    """bench/durable_floor.py: pywa's server plus one durable row before the 200, and a worker of its own,
    on the same PostgreSQL (its own table) and the same fake Graph API."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    database_url = running.database_url
    durable_floor.create(database_url)
    side = Side(
        "durable floor",
        url,
        durable_floor.CHALLENGE,
        durable_floor.commands(running, port),
        dict(os.environ),
        started,
        [],
        lambda: durable_floor.wait_ready(database_url, url),
        lambda: durable_floor.open_work(database_url),
    )
    side.restart()
    return side


def message(prefix: str, i: int) -> tuple[str, bytes]:
    """A text message from a contact of its own (phone number and BSUID, as Meta sends both): wamid, body."""
    wa_id = f"{prefix}{i:06d}"
    text = payloads.text_message(f"{QUESTION} {i}", wa_id=wa_id)
    text["from_user_id"] = f"US.{wa_id}"
    contact = {"profile": {"name": f"Contact {wa_id}"}, "wa_id": wa_id, "user_id": f"US.{wa_id}"}
    return text["id"], payloads.dumps(payloads.inbound(text, contacts=[contact]))


def post(client: httpx.Client, body: bytes) -> float:
    """One signed POST; its answer time in ms (bench.common.signed_post's timing, for a ready body)."""
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(SECRET, body)}
    started = time.perf_counter()
    client.post(ENDPOINT, content=body, headers=headers).raise_for_status()
    return (time.perf_counter() - started) * 1000


def sends(graph: str, wamids: set[str]) -> dict[str, list[dict]]:
    """The accepted sends quoting each of `wamids`, as the fake recorded them."""
    found: dict[str, list[dict]] = {}
    for r in httpx.get(f"{graph}/_fake/requests", timeout=30).json():
        quoted = (r["body"].get("context") or {}).get("message_id")
        if r["accepted"] and quoted in wamids:
            found.setdefault(quoted, []).append(r)
    return found


def wait_answered(graph: str, wamids: set[str], timeout: float = 60) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout
    while len(found := sends(graph, wamids)) < len(wamids) and time.monotonic() < deadline:
        time.sleep(0.5)  # each look fetches every request the fake recorded: not too often
    return found


def settle(side: Side, graph: str, wamids: set[str], quiet: float = 1.5, timeout: float = 180) -> None:
    """Until the side has no open work and the fake got no new send for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = sum(len(v) for v in sends(graph, wamids).values())
        if count != seen:
            seen, since = count, time.monotonic()
        if not side.open_work() and time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{side.name} did not settle in {timeout:.0f} s")


def ack(side: Side, graph: str, prefix: str, count: int, concurrency: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    wamids: set[str] = set()
    with httpx.Client(base_url=side.url, timeout=30) as client:
        for i in range(20):  # warm up connections and caches
            wamid, body = message(prefix + "9", i)
            post(client, body)
            wamids.add(wamid)
        floor = []
        for _ in range(min(count, 200)):
            started = time.perf_counter()
            client.get(side.floor).raise_for_status()
            floor.append((time.perf_counter() - started) * 1000)
        bodies = [message(prefix + "1", i) for i in range(count)]
        cpu = time.process_time()
        sequential = [post(client, body) for _, body in bodies]
        figures[DRIVER] = (time.process_time() - cpu) * 1000 / count
    wamids.update(wamid for wamid, _ in bodies)
    figures["floor GET p50 (ms)"] = statistics.median(floor)
    figures["ack p50 (ms)"] = statistics.median(sequential)
    figures["ack p99 (ms)"] = percentile(sequential, 0.99)
    if concurrency:
        bodies = [message(prefix + "2", i) for i in range(count)]
        wamids.update(wamid for wamid, _ in bodies)
        clients = [httpx.Client(base_url=side.url, timeout=30) for _ in range(concurrency)]
        try:
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                parallel = list(pool.map(lambda i: post(clients[i % concurrency], bodies[i][1]), range(count)))
        finally:
            for client in clients:
                client.close()
        figures[f"ack p50, {concurrency} clients (ms)"] = statistics.median(parallel)
        figures[f"ack p99, {concurrency} clients (ms)"] = percentile(parallel, 0.99)
    # the replies these bring, sent before the next measurement starts (it would share the machine with them)
    figures["ack: replies missing"] = len(wamids) - len(wait_answered(graph, wamids, timeout=120))
    return figures


def reply(side: Side, graph: str, prefix: str, count: int, rate: float) -> dict[str, float]:
    """Webhook to reply: POST sent -> the fake receives the reply quoting it; paced, one client."""
    posted: dict[str, float] = {}
    with httpx.Client(base_url=side.url, timeout=30) as client:
        start = time.monotonic()
        for i in range(count):
            wamid, body = message(prefix, i)
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            posted[wamid] = time.time()
            post(client, body)
    found = wait_answered(graph, set(posted))
    latencies = [(found[w][0]["at"] - at) * 1000 for w, at in posted.items() if w in found]
    expected = answer()
    return {
        "reply p50 (ms)": statistics.median(latencies),
        "reply p99 (ms)": percentile(latencies, 0.99),
        "replies missing": count - len(latencies),
        "replies sent twice": sum(len(v) > 1 for v in found.values()),
        "replies with another text": sum(r["body"]["text"]["body"] != expected for v in found.values() for r in v),
    }


def sigkill(side: Side, graph: str, prefix: str, statuses: bool) -> dict[str, float]:
    fake = httpx.Client(base_url=graph, timeout=30)
    if statuses:  # as Meta does: a `sent` status webhook for each accepted send
        config = {"auto_statuses": ["sent"], "webhook_url": side.url + ENDPOINT, "app_secret": SECRET}
        fake.post("/_fake/config", json=config).raise_for_status()
    bodies = [message(prefix, i) for i in range(KILLED)]
    wamids = {wamid for wamid, _ in bodies}
    clients = [httpx.Client(base_url=side.url, timeout=30) for _ in range(10)]
    try:
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda i: post(clients[i % 10], bodies[i][1]), range(KILLED)))
        side.kill()  # right after the 50th ack
        killed_at = time.time()
    finally:
        for client in clients:
            client.close()
    before = sum(1 for v in sends(graph, wamids).values() if v[0]["at"] <= killed_at)
    side.restart()
    if statuses:  # Meta redelivers the status webhooks the dead web process did not answer
        for v in sends(graph, wamids).values():
            for r in v:
                status = {
                    "wa_message_id": r["wa_message_id"],
                    "status": "sent",
                    "phone_number_id": r["phone_number_id"],
                    "recipient_id": r["body"]["to"],
                    "callback_data": r["body"].get("biz_opaque_callback_data"),
                }
                fake.post("/_fake/status", json=status).raise_for_status()
    settle(side, graph, wamids)
    if statuses:
        fake.post("/_fake/config", json={"auto_statuses": []}).raise_for_status()
    fake.close()
    found = sends(graph, wamids)
    return {
        "SIGKILL: answered before the kill": before,
        f"SIGKILL: replies lost (of {KILLED})": KILLED - len(found),
        "SIGKILL: answered twice": sum(len(v) > 1 for v in found.values()),
    }


GOALS: dict[str, tuple[str, Callable[[list[float], list[float]], bool]]] = {
    # figure: (goal, whether met, given the side's figures (Waypost's, or the floor's) and its per-run ratios to pywa)
    "ack p50 (ms)": ("<= 1.25x pywa", lambda w, r: statistics.median(r) <= 1.25),
    "ack p99 (ms)": ("<= 2x pywa", lambda w, r: statistics.median(r) <= 2.0),
    "reply p50 (ms)": ("<= 2x pywa", lambda w, r: statistics.median(r) <= 2.0),
    "reply p99 (ms)": ("< 25 ms", lambda w, r: statistics.median(w) < 25.0),
    f"SIGKILL: replies lost (of {KILLED})": ("0, every run", lambda w, r: max(w) == 0),
    "SIGKILL: answered twice": ("0, every run", lambda w, r: max(w) == 0),
}


def spread(values: list[float]) -> str:
    digits = 0 if all(float(v).is_integer() for v in values) else 1 if statistics.median(values) >= 10 else 2
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(runs: list[dict[str, dict[str, float]]], names: tuple[str, str]) -> list[str]:
    waypost, pywa = names
    lines = [f"{'figure':38} {waypost:>20} {pywa:>20} {'ratio to pywa':>18}  goal"]
    for key in runs[0][waypost]:
        w = [run[waypost][key] for run in runs]
        p = [run[pywa][key] for run in runs]
        ratios = [a / b for a, b in zip(w, p, strict=True) if b] if key.endswith("(ms)") else []
        goal, met = GOALS.get(key, ("", lambda w, r: True))
        verdict = f"{goal}: {'met' if met(w, ratios or [0.0]) else 'NOT MET'}" if goal else ""
        ratio = spread(ratios) + "x" if ratios else ""
        lines.append(f"{key:38} {spread(w):>20} {spread(p):>20} {ratio:>18}  {verdict}")
    return lines


def floor_table(runs: list[dict[str, dict[str, float]]], floor: str, pywa: str) -> list[str]:
    """The floor's figures against pywa's, the goals applied to them: could any durable design meet them
    here; then procrastinate's own wake-up, which a reply run as a procrastinate job waits on top."""
    wake = [run[WAKE] for run in runs]
    # per run: pywa's reply p50 twice (the goal), less what procrastinate alone takes from commit to task
    left = [2 * run[pywa]["reply p50 (ms)"] - run[WAKE]["p50"] for run in runs]
    return [
        "",
        f"{floor} (bench/durable_floor.py) beside pywa, the same runs:",
        *table(runs, (floor, pywa)),
        f"procrastinate's own worker, one job deferred at a time at the reply phase's rate (same runs): "
        f"defer returned -> task start p50 {spread([w['p50'] for w in wake])} ms, "
        f"p99 {spread([w['p99'] for w in wake])} ms (the defer itself, with its commit: "
        f"{spread([w['defer p50'] for w in wake])} ms)",
        f"2x pywa's reply p50 less that wake-up: {spread(left)} ms for everything else a reply sent from a "
        "procrastinate job does: the POST up to its commit, the reply's own work, the send",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=300, help="POSTs per ack and per reply measurement")
    parser.add_argument("--rate", type=float, default=20.0, help="POSTs/s while measuring webhook to reply")
    parser.add_argument("--concurrency", type=int, default=8, help="clients of the concurrent ack (0: none)")
    parser.add_argument(
        "--pywa",
        choices=("async", "sync"),
        default="sync",
        help="pywa (sync handlers, the docs' first example) or pywa_async",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="a third side, bench/durable_floor.py (ack and reply): what any design committing before the 200 pays",
    )
    parser.add_argument("--no-save", action="store_true", help="print only, append nothing to bench/results")
    args = parser.parse_args()

    runs: list[dict[str, dict[str, float]]] = []
    others: list[subprocess.Popen] = []
    with stack(1, 1, **WAYPOST_ENV) as running:
        try:
            sides = [waypost_side(running), pywa_side(running.graph, args.pywa, others)]
            if args.floor:
                sides.append(floor_side(running, others))
            for run in range(args.runs):
                order = sides if run % 2 == 0 else sides[::-1]
                figures: dict[str, dict[str, float]] = {side.name: {} for side in sides}
                for n, phase in enumerate(("ack", "reply", "sigkill")):
                    for side in order:
                        if phase == "sigkill" and side.name == "durable floor":
                            continue  # it claims before it sends: a kill mid-send loses that reply, by design
                        prefix = f"3{sides.index(side)}{run % 10}{n}"
                        if phase == "ack":
                            result = ack(side, running.graph, prefix, args.count, args.concurrency)
                        elif phase == "reply":
                            result = reply(side, running.graph, prefix, args.count, args.rate)
                        else:
                            result = sigkill(side, running.graph, prefix, statuses=side is sides[0])
                        figures[side.name].update(result)
                        print(f"run {run + 1} {side.name} {phase}: {result}", file=sys.stderr, flush=True)
                if args.floor:
                    waits, defers = procrastinate_wake(running, args.count, args.rate)
                    figures[WAKE] = {
                        "p50": statistics.median(waits),
                        "p99": percentile(waits, 0.99),
                        "defer p50": statistics.median(defers),
                    }
                    print(f"run {run + 1} {WAKE}: {figures[WAKE]}", file=sys.stderr, flush=True)
                runs.append(figures)
        finally:
            stop_processes(others)

    names = (sides[0].name, sides[1].name)
    driver = statistics.median(run[name][DRIVER] for run in runs for name in names)
    fastest = statistics.median(run[names[1]]["ack p50 (ms)"] for run in runs)
    share = 100 * driver / fastest
    floor = statistics.median(run[names[1]]["floor GET p50 (ms)"] for run in runs)
    lines = [
        machine(f"pywa 4.5.0 ({args.pywa}) beside Waypost (1 worker, rules provider, no quiet window)"),
        f"{args.runs} runs, median (min-max); {args.count} POSTs per ack measurement, webhook to reply at "
        f"{args.rate:.0f}/s from one client; SIGKILL after {KILLED} acks from 10 clients",
        *table(runs, names),
        *(floor_table(runs, sides[2].name, names[1]) if args.floor else []),
        f"driver: {driver:.2f} ms of its own CPU per sequential POST (signing, sending, reading the answer): "
        f"{share:.0f}% of pywa's ack p50: "
        + (
            "the driver waits on the servers most of each request, it is not what holds them back"
            if share < 50
            else "a large share: the driver's cost is part of these latencies"
        ),
        f"floor: a GET on pywa's server through the same driver takes {floor:.2f} ms at p50"
        + (
            ", about pywa's ack: pywa's ack is at the driver's and HTTP's floor, and the ack ratios understate the gap"
            if fastest < 1.5 * floor
            else f", well under pywa's ack ({fastest:.2f} ms)"
        ),
    ]
    report("pywa", lines, record=not args.no_save)


if __name__ == "__main__":
    main()
