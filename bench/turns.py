"""One answer per burst (README "Turns"): bursts of 5 messages, each in its own conversation, each
answered by one reply; the time from the burst's last message to its reply, minus the quiet window.

    .venv/bin/python -m bench.turns [--bursts 20] [--window 1.0]

Starts the stack (bench.common.stack) with WAYPOST_TURN_QUIET_SECONDS=--window, posts the five
messages of each burst back to back (a new burst every 0.25 s, open loop), and joins each burst with
the one send the fake Graph API received for it (by its key, `reply:<first wamid>`). The goal: under
250 ms beyond the window on this machine. Results are appended to bench/results/turns.txt.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import machine, percentile, report, signed_post, stack
from waypost.devtools import payloads

GOAL_MS = 250.0
BURST = ("hi", "I ordered a lamp", "order 4411", "it arrived broken", "can I get a new one?")


def measure(bursts: int, window: float) -> list[str]:
    """Run the bursts on a stack of their own; the report's lines."""
    last_posted: dict[str, float] = {}  # key -> when the burst's last POST was sent
    rules = Path(tempfile.mkdtemp(prefix="waypost-bench-rules-")) / "rules.toml"
    rules.write_text('fallback = "You said: {message}"\n')  # the reply quotes what it answers
    with stack(WAYPOST_TURN_QUIET_SECONDS=str(window), WAYPOST_RULES_FILE=str(rules)) as running:

        def post_burst(n: int) -> None:
            messages = [payloads.text_message(text, wa_id=f"3470{n:07d}") for text in BURST]
            with httpx.Client(base_url=running.web, timeout=30) as client:
                for i, message in enumerate(messages):
                    if i == len(messages) - 1:
                        last_posted[f"reply:{messages[0]['id']}"] = time.time()
                    signed_post(client, message)

        start = time.monotonic() + 0.2
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures = []
            for n in range(bursts):
                delay = start + n * 0.25 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(post_burst, n))
            for future in futures:
                future.result()
        deadline = time.monotonic() + 60
        sends: list[dict] = []
        while time.monotonic() < deadline:
            sends = [r for r in httpx.get(f"{running.graph}/_fake/requests", timeout=30).json() if r["accepted"]]
            if len(sends) >= bursts:
                break
            time.sleep(0.2)
    per_key: dict[str, list[dict]] = {}
    for send in sends:
        per_key.setdefault(send["body"]["biz_opaque_callback_data"], []).append(send)
    beyond = [(sent[0]["at"] - last_posted[key] - window) * 1000 for key, sent in per_key.items() if key in last_posted]
    complete = sum(all(text in sent[0]["body"]["text"]["body"] for text in BURST) for sent in per_key.values())
    median = statistics.median(beyond)
    return [
        machine(f"rules provider (an echo), 1 worker, WAYPOST_TURN_QUIET_SECONDS={window}"),
        f"{bursts} bursts of 5 messages, each its own conversation: {len(sends)} replies "
        f"({sum(len(s) for s in per_key.values()) - len(per_key)} extra), "
        f"{complete} mentioning all five messages",
        f"last message -> its reply at the fake Graph API, minus the {window * 1000:.0f} ms window: "
        f"median {median:.0f} ms, p90 {percentile(beyond, 0.9):.0f} ms, max {max(beyond):.0f} ms "
        f"(goal < {GOAL_MS:.0f} ms: median {median / GOAL_MS:.2f}x of it)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--window", type=float, default=1.0)
    args = parser.parse_args()
    report("turns", measure(args.bursts, args.window))


if __name__ == "__main__":
    main()
