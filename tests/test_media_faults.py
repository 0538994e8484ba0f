"""Downloads that hang, drip or whose URL expires: each attempt is cut off in bounded time, asks
Meta for a fresh URL (never reusing one), and the file is stored in the end or given up visibly,
while the message and its reply go on. (Failing lookups and downloads: tests/test_media.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from tests.conftest import wait_until
from tests.test_media import JPEG, PNG, b64_sha256, post_media, settled_media, stored_bytes
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph


def downloads(fake_graph: FakeGraph) -> list[tuple[str, str]]:
    """What each download of a URL got, with the URL's token."""
    return [(what, token) for what, token in fake_graph.media_urls if what != "issued"]


def assert_each_url_used_once_after_its_own_lookup(fake_graph: FakeGraph) -> None:
    """Every download used the URL the lookup just before it issued: none was used twice."""
    urls = fake_graph.media_urls
    for index, (what, token) in enumerate(urls):
        if what != "issued":
            assert urls[index - 1] == ("issued", token), urls
    tokens = [token for _, token in downloads(fake_graph)]
    assert len(tokens) == len(set(tokens)), urls


def test_a_download_that_hangs_is_cut_off_and_retried_with_a_fresh_url(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    # Silent before the headers for a minute; the worker's read timeout (2 s in tests) cuts it off.
    media = fake_graph.add_media("media-hang", PNG, "image/png", hang_downloads=1, url_uses=1)
    message = payloads.media_message("image", "media-hang", mime_type="image/png", sha256=b64_sha256(PNG))
    post_media(client, message)
    start_worker()
    try:
        stored = settled_media(db, message["id"])
    finally:
        media.release.set()
    assert (stored["status"], stored["attempts"]) == ("stored", 2)
    assert stored_bytes(db, stored["id"]) == PNG
    assert [what for what, _, _ in fake_graph.media_requests] == ["lookup", "download", "lookup", "download"]
    assert [what for what, _ in downloads(fake_graph)] == ["hung", "served"]
    assert_each_url_used_once_after_its_own_lookup(fake_graph)


def test_a_download_that_stops_midway_keeps_none_of_its_bytes(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    media = fake_graph.add_media(
        "media-half", JPEG, "image/jpeg", hang_downloads=1, hang_after_bytes=len(JPEG) // 2, url_ttl=60
    )
    message = payloads.media_message("image", "media-half", mime_type="image/jpeg")
    post_media(client, message)
    start_worker()
    try:
        stored = settled_media(db, message["id"])
    finally:
        media.release.set()
    assert (stored["status"], stored["attempts"], stored["byte_size"]) == ("stored", 2, len(JPEG))
    assert stored_bytes(db, stored["id"]) == JPEG  # the first half-file left nothing behind
    assert_each_url_used_once_after_its_own_lookup(fake_graph)


def test_a_download_that_drips_forever_is_cut_off_by_the_attempt_deadline(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    # 16 KiB every 0.2 s: each read arrives well within the read timeout; the whole would take 15 s.
    fake_graph.add_media("media-drip", JPEG, "image/jpeg", slow_downloads=1)
    message = payloads.media_message("image", "media-drip", mime_type="image/jpeg")
    post_media(client, message)
    worker = start_worker(WAYPOST_MEDIA_DOWNLOAD_TIMEOUT="2")
    stored = settled_media(db, message["id"])
    assert (stored["status"], stored["attempts"]) == ("stored", 2)
    assert stored_bytes(db, stored["id"]) == JPEG
    assert [what for what, _ in downloads(fake_graph)] == ["dripped", "served"]
    assert "not downloaded within 2 s" in worker.output()
    assert_each_url_used_once_after_its_own_lookup(fake_graph)


def test_an_expired_url_is_looked_up_again_never_reused(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    # The first URL has expired by the time it is downloaded (Meta answers 404): a 4xx to the
    # download is not final, the next attempt asks GET /{media-id} again.
    fake_graph.add_media("media-late", PNG, "image/png", expired_urls=1)
    message = payloads.media_message("image", "media-late", mime_type="image/png")
    post_media(client, message)
    start_worker()
    stored = settled_media(db, message["id"])
    assert (stored["status"], stored["attempts"]) == ("stored", 2)
    assert [what for what, _, _ in fake_graph.media_requests] == ["lookup", "download", "lookup", "download"]
    assert [what for what, _ in downloads(fake_graph)] == ["expired", "served"]
    assert_each_url_used_once_after_its_own_lookup(fake_graph)


def test_a_download_that_fails_twice_on_single_use_urls_is_stored_on_the_third(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    # Each URL works once: a worker that retried the same URL would get "expired" and never succeed.
    fake_graph.add_media("media-once", PNG, "image/png", fail_downloads=2, url_uses=1)
    message = payloads.media_message("image", "media-once", mime_type="image/png")
    post_media(client, message)
    start_worker()
    stored = settled_media(db, message["id"])
    assert (stored["status"], stored["attempts"]) == ("stored", 3)
    assert [what for what, _, _ in fake_graph.media_requests] == ["lookup", "download"] * 3
    assert "expired" not in [what for what, _ in downloads(fake_graph)]
    assert_each_url_used_once_after_its_own_lookup(fake_graph)


def test_a_download_that_always_hangs_is_given_up_and_the_reply_still_goes_out(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    media = fake_graph.add_media("media-stuck", PNG, "image/png", hang_downloads=100)
    message = payloads.media_message("image", "media-stuck", mime_type="image/png", caption="is this in stock?")
    post_media(client, message)
    start_worker(WAYPOST_MEDIA_MAX_ATTEMPTS="2")
    try:
        failed = settled_media(db, message["id"])
    finally:
        media.release.set()
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert "ReadTimeout" in failed["last_error"]
    assert stored_bytes(db, failed["id"]) == b""
    notice = db.execute("SELECT * FROM notifications WHERE kind = 'media_failed'").fetchone()
    assert notice is not None and notice["message_id"] == failed["message_id"]
    sent = wait_until(lambda: fake_graph.accepted(), what="the reply to the caption")
    assert len(sent) == 1
    assert (
        db.execute("SELECT count(*) AS n FROM messages WHERE wa_message_id = %s", (message["id"],)).fetchone()["n"] == 1
    )
    assert_each_url_used_once_after_its_own_lookup(fake_graph)
