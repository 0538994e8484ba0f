"""Live inbox: webhook POST -> the message visible on an open inbox page, in headless Chromium.

    .venv/bin/python -m bench.inbox_live [--messages 100] [--interval 0.2]

Starts the stack (bench.common.stack) with the inbox on, signs an operator in to /inbox in Debian's
Chromium (Playwright), then posts signed webhooks, each from a new contact, one every --interval
seconds, while the worker answers them. A MutationObserver in the page timestamps each new contact's
first appearance in the conversation list, by number (the preview may already show the AI's reply),
with Date.now(): the same wall clock as this process.
Results are appended to bench/results/inbox_live.txt.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from bench.common import INBOX_SESSION_SECRET, Stack, machine, percentile, report, signed_post, stack
from waypost.devtools import payloads
from waypost.devtools.browser import CHROMIUM_FLAGS, chromium_path
from waypost.operators import add_operator

PASSWORD = "bench-operator-password"
WATCH = """() => {
  window.seen = {};
  new MutationObserver(() => {
    for (const el of document.querySelectorAll("li.conversation .number")) {
      const match = el.textContent.match(/\\+3470(\\d{7})/);
      if (match && !(Number(match[1]) in window.seen)) window.seen[Number(match[1])] = Date.now();
    }
  }).observe(document.body, { childList: true, subtree: true, characterData: true });
}"""


def open_inbox(playwright: Playwright, running: Stack) -> tuple[Browser, Page]:
    """An operator signed in to /inbox in headless Chromium, its live feed connected (the stack runs
    with WAYPOST_SESSION_SECRET=INBOX_SESSION_SECRET)."""
    add_operator(running.database_url, "bench@example.com", PASSWORD)
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
    page = browser.new_page(base_url=running.web)
    page.goto("/inbox/login")
    page.fill("input[name=email]", "bench@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#live-status[data-state=live]")
    return browser, page


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()

    posted: dict[str, float] = {}
    with stack(WAYPOST_SESSION_SECRET=INBOX_SESSION_SECRET) as running, sync_playwright() as playwright:
        browser, page = open_inbox(playwright, running)
        page.evaluate(WATCH)
        with httpx.Client(base_url=running.web, timeout=30) as client:
            for i in range(args.messages):
                message = payloads.text_message(f"bench-{i} where is my order?", wa_id=f"3470{i:07d}")
                posted[str(i)] = time.time() * 1000
                signed_post(client, message)
                time.sleep(args.interval)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(page.evaluate("window.seen")) < args.messages:
            time.sleep(0.1)
        seen: dict[str, float] = page.evaluate("window.seen")
        browser.close()

    latencies = [seen[i] - at for i, at in posted.items() if i in seen]
    report(
        "inbox_live",
        [
            machine(f"1 web process, 1 worker answering meanwhile, Chromium {chromium_path()}"),
            f"{args.messages} messages, one every {args.interval * 1000:.0f} ms, each from a new contact; "
            f"{len(latencies)} seen on the page ({args.messages - len(latencies)} missing)",
            f"webhook POST -> message visible in the open conversation list: median "
            f"{statistics.median(latencies):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms, "
            f"max {max(latencies):.0f} ms",
        ],
    )


if __name__ == "__main__":
    main()
