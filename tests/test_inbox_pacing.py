"""The inbox page under a busy number's changes, in real headless Chromium: its refreshes are paced so
that the server spends at most a tenth of the time on a region (webhook/inbox/static/inbox.js)."""

from __future__ import annotations

import itertools
import time
import urllib.parse

import httpx
import psycopg
from playwright.sync_api import Page, expect

from tests.test_inbox_browser import browser, page, post_inbound  # noqa: F401  (the signed-in page's fixtures)

LIST = "/inbox/fragments/conversations"


def test_a_busy_number_refreshes_the_list_at_most_a_tenth_of_the_time(
    page: Page,  # noqa: F811
    client: httpx.Client,
    db: psycopg.Connection,
) -> None:
    post_inbound(client, "the conversation whose name keeps changing")
    expect(page.locator("li.conversation", has_text="Sheena Nelson")).to_be_visible()
    fetches: list[tuple[float, float]] = []  # each list refresh: when it began (epoch ms), its fetch (ms)
    page.on(
        "requestfinished",
        lambda request: (
            fetches.append((request.timing["startTime"], request.timing["responseEnd"]))
            if urllib.parse.urlsplit(request.url).path == LIST
            else None
        ),
    )
    # A busy number: the conversation changes about every 5 ms for 2 s, each change announced live. The
    # pause sets the rate of changes (and lets Playwright deliver the page's events); nothing waits on it.
    deadline = time.monotonic() + 2.0
    n = 0
    while time.monotonic() < deadline:
        n += 1
        db.execute("UPDATE conversations SET contact_name = %s WHERE wa_id = '16505551234'", (f"Name {n}",))
        page.wait_for_timeout(5)
    # the last change shows, once the wait after the last refresh is over
    expect(page.locator("li.conversation", has_text=f"Name {n}")).to_be_visible()
    during = sorted(fetches)
    assert len(during) >= 2, during
    # each refresh waited ten times the fetch of the one before, a second at most (half of either, for
    # the difference between the page's clock and Chromium's network timings)
    for (began, took), (next_began, _) in itertools.pairwise(during):
        assert next_began - began >= min(5 * took, 500), (during, n)
