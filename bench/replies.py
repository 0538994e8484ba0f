"""The reply run alone: its statements, and its sustained throughput beside procrastinate's no-op jobs.

    .venv/bin/python -m bench.replies profile [--warm 200] [--log-level INFO]
    .venv/bin/python -m bench.replies throughput [--load 1000] [--runs 1] [--log-level INFO]

`profile` starts the stack (bench.common.stack: rules provider, no quiet window) with PostgreSQL
logging every statement (with `--log-level INFO`, the processes' stage lines with elapsed_ms go to
stderr), warms the worker's connections up (psycopg prepares a statement after its 5th run on a
connection), posts one message and prints every statement of the web and the worker processes from
the POST to the reply recorded, with the time between them: what one reply costs.

`throughput` runs bench.yardstick's sustained_beside_noop() only (procrastinate's no-op jobs right before
and right after the replies) and prints the ratio to the no-op jobs' mean (the issue's goal: replies/s
>= 0.7x the no-op jobs/s). Nothing is written to bench/results.
The benchmarks run the stack at WAYPOST_LOG_LEVEL=WARNING; `--log-level INFO` runs it at the default
instead (every line goes to stderr: redirect it), to see what the default's lines cost per reply.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import re
import statistics
import time
from pathlib import Path

import httpx

from bench.common import Stack, cpu_seconds, graph_sends, signed_post, stack, wait_drained
from bench.scale import sustained
from bench.yardstick import Sustained, sustained_beside_noop
from waypost.db import connect_sync, execute_sync, fetch_one_sync
from waypost.devtools import payloads

LINE = re.compile(r"^(\S+ \S+) \S+ \[(\d+)\] (?:LOG|ERROR|STATEMENT): +(.*)$")
DURATION = re.compile(r"duration: ([\d.]+) ms\s+(?:execute \S+|statement|bind \S+|parse \S+)?:?\s*(.*)$", re.S)


def _log_statements(database_url: str) -> Path:
    with connect_sync(database_url, autocommit=True) as conn:
        for name in ("bench_log_every_statement", "bench_log_line_prefix", "bench_reload_conf"):
            execute_sync(conn, name)
        return Path(fetch_one_sync(conn, "bench_data_directory")["data_directory"]) / "log"


def _entries(text: str) -> list[tuple[dt.datetime, int, str]]:
    """(time, backend pid, what ran) for each `execute` or simple statement of the log."""
    entries: list[tuple[dt.datetime, int, str]] = []
    for raw in text.splitlines():
        match = LINE.match(raw)
        if match is None:
            if entries and raw.startswith(("\t", " ")):
                at, pid, rest = entries[-1]
                entries[-1] = (at, pid, f"{rest} {raw.strip()}")
            continue
        stamp, pid_text, rest = match.groups()
        entries.append((dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f"), int(pid_text), rest))
    kept = []
    for at, pid, rest in entries:
        if " parse " in rest[:40] or " bind " in rest[:40]:
            continue  # the execute line names the statement and its whole time
        found = DURATION.search(rest)
        text = " ".join((found.group(2) if found else rest).split())
        ms = found.group(1) if found else "?"
        kept.append((at, pid, f"{ms:>7} ms  {text[:150]}"))
    return kept


def profile(warm: int, log_level: str) -> None:
    with stack(WAYPOST_LOG_LEVEL=log_level) as running:
        log = _log_statements(running.database_url)
        with httpx.Client(base_url=running.web, timeout=30) as client:
            for i in range(warm):
                signed_post(client, payloads.text_message(f"warm {i}", wa_id=f"4{i % 50:010d}"))
            wait_drained(running)
            time.sleep(0.5)
            offset = log.stat().st_size
            message = payloads.text_message("what are your opening hours?", wa_id="41234567890")
            signed_post(client, message)
            deadline = time.monotonic() + 10
            while message["id"] not in graph_sends(running):
                assert time.monotonic() < deadline, "no reply"
                time.sleep(0.05)
            wait_drained(running)
            time.sleep(0.3)
        with log.open() as f:
            f.seek(offset)
            entries = _entries(f.read())
    first = entries[0][0] if entries else dt.datetime.now()
    previous: dict[int, dt.datetime] = {}
    for at, pid, what in entries:
        gap = (at - previous.get(pid, at)).total_seconds() * 1000
        previous[pid] = at
        print(f"{(at - first).total_seconds() * 1000:8.2f} ms  pid {pid:<6} +{gap:6.2f}  {what}")
    print(f"{len(entries)} statements")


def _sustained_cpu(cpu: dict[str, float], running: Stack, load: int) -> tuple[float, float]:
    """sustained(), and each part's CPU milliseconds per reply over it into `cpu`."""
    before = cpu_seconds(running.database_url)
    result = sustained(running, load)
    after = cpu_seconds(running.database_url)
    cpu.update({part: (after[part] - before.get(part, 0.0)) * 1000 / load for part in after})
    return result


def throughput(load: int, runs: int, log_level: str) -> None:
    figures: list[Sustained] = []
    for _ in range(runs):
        cpu: dict[str, float] = {}
        with stack(WAYPOST_LOG_LEVEL=log_level) as running:
            result = sustained_beside_noop(running, load, functools.partial(_sustained_cpu, cpu))
        figures.append(result)
        print(result.line(), flush=True)
        print("CPU ms per reply: " + ", ".join(f"{part} {ms:.2f}" for part, ms in sorted(cpu.items())), flush=True)
    if runs > 1:
        ratios = [result.ratio for result in figures]
        print(f"median ratio {statistics.median(ratios):.2f} (from {min(ratios):.2f} to {max(ratios):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("profile")
    one.add_argument("--warm", type=int, default=200)
    one.add_argument("--log-level", default="WARNING", help="INFO: the processes' stage lines too (stderr)")
    run = sub.add_parser("throughput")
    run.add_argument("--load", type=int, default=1000)
    run.add_argument("--runs", type=int, default=1)
    run.add_argument("--log-level", default="WARNING", help="INFO: the default level, every line to stderr")
    args = parser.parse_args()
    if args.command == "profile":
        profile(args.warm, args.log_level)
    else:
        throughput(args.load, args.runs, args.log_level)


if __name__ == "__main__":
    main()
