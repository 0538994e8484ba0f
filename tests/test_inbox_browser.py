"""The inbox in real headless Chromium (Debian's package, driven by Playwright): sign in, watch a
conversation arrive live, reply, see the ticks move, pause the AI, snooze a notification."""

from __future__ import annotations

import datetime as dt
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from starlette.responses import HTMLResponse

from tests.conftest import ServerThread, WebServer, post_webhook
from tests.inbox_client import PASSWORD, create_operator
from waypost.devtools import payloads
from waypost.devtools.browser import CHROMIUM_FLAGS, chromium_path
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.devtools.net import free_port
from waypost.settings import Settings
from webhook.app import create_app

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Waits for conditions, with room for a busy machine (Playwright's own default is 5 s).
expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, web: WebServer, database_url: str) -> Iterator[Page]:
    create_operator(database_url)
    context = browser.new_context(base_url=web.url, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/inbox")
    expect(page).to_have_url(f"{web.url}/inbox/login?next=/inbox")
    page.fill("input[name=email]", "op@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{web.url}/inbox")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    yield page
    context.close()


def post_inbound(client: httpx.Client, body: str) -> float:
    """Post a signed inbound message; returns when the POST started (perf_counter)."""
    started = time.perf_counter()
    message = payloads.text_message(body)
    contacts = [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}]
    assert post_webhook(client, payloads.dumps(payloads.inbound(message, contacts=contacts))).status_code == 200
    return started


def test_operator_works_a_conversation_live(
    page: Page, client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    start_worker()
    # 1. A webhook arrives: the conversation appears on the open list without a reload.
    started = post_inbound(client, "Hello, is anyone there?")
    # (by name: the preview may already show the AI's reply when the row first appears)
    row = page.locator("li.conversation", has_text="Sheena Nelson")
    expect(row).to_be_visible()
    appeared_ms = (time.perf_counter() - started) * 1000
    (ARTIFACTS).mkdir(exist_ok=True)
    (ARTIFACTS / "live_latency.txt").write_text(f"webhook POST to message on the open list: {appeared_ms:.0f} ms\n")
    print(f"\nwebhook POST to message visible on the open page: {appeared_ms:.0f} ms")

    # 2. Open it: the message and the AI's reply are there, sent.
    row.locator("a").click()
    expect(page.locator(".message.inbound")).to_contain_text("Hello, is anyone there?")
    expect(page.locator(".message.author-ai")).to_have_attribute("data-status", "sent")

    # 3. Reply as operator: 'sending' at once (the Graph API is slow this time), then 'sent'.
    fake_graph.script.append(Behaviour(hang=1.0))
    page.fill("#reply-form textarea", "Hi Sheena, Sam here. How can I help?")
    page.click("#reply-form button[type=submit]")
    mine = page.locator(".message.author-operator")
    expect(mine).to_have_attribute("data-status", "sending")
    expect(mine).to_contain_text("op@example.com")
    expect(mine).to_have_attribute("data-status", "sent")
    expect(page.locator("#ai-state")).to_have_attribute("data-ai", "paused")  # a reply takes over

    # 4. Meta reports delivery, then read: the ticks follow.
    wamid = db.execute("SELECT wa_message_id FROM messages WHERE author = 'operator'").fetchone()["wa_message_id"]
    for value in ("delivered", "read"):
        post_webhook(client, payloads.dumps(payloads.statuses(payloads.status(wamid, value))))
        expect(mine).to_have_attribute("data-status", value)

    # 5. With the AI paused, the next message waits for the operator.
    post_inbound(client, "Can I change my order?")
    waiting = page.locator(".message.inbound", has_text="Can I change my order?")
    expect(waiting.locator("[data-left-for-operator]")).to_be_visible()
    assert db.execute("SELECT count(*) AS n FROM messages WHERE author = 'ai'").fetchone()["n"] == 1
    expect(page.locator("#notification-badge .count")).to_have_attribute("data-unread", "1")
    page.screenshot(path=str(ARTIFACTS / "conversation.png"), full_page=True)

    # 6. Resume the AI from the page.
    page.click("#resume-ai")
    expect(page.locator("#ai-state")).to_have_attribute("data-ai", "on")

    # 7. On a phone-sized screen nothing overflows sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (page.url, "/inbox", "/inbox/notifications"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    page.goto("/inbox")
    page.locator("li.conversation a").first.click()
    page.screenshot(path=str(ARTIFACTS / "conversation-phone.png"), full_page=True)


def test_send_failure_shows_metas_error_and_a_notification_can_be_snoozed(
    page: Page, client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    start_worker()
    fake_graph.script.append(Behaviour(status=400, code=131026))  # the AI's reply is undeliverable
    post_inbound(client, "hello?")
    expect(page.locator("li.conversation", has_text="Sheena Nelson")).to_be_visible()
    page.locator("li.conversation", has_text="Sheena Nelson").locator("a").click()
    failed = page.locator(".message.author-ai")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed).to_contain_text("131026")
    page.goto("/inbox?filter=send_failed")
    expect(page.locator("li.conversation [data-badge=send_failed]")).to_be_visible()

    page.goto("/inbox/notifications")
    notification = page.locator("li.notification.kind-send_failed")
    expect(notification).to_contain_text("131026")
    expect(page.locator("#notification-badge .count")).to_have_attribute("data-unread", "1")
    # snooze until a few seconds from now (the browser's local time), then see it come back by itself;
    # long enough that a busy machine still shows it gone before it is due back
    snooze = 20
    until = (dt.datetime.now() + dt.timedelta(seconds=snooze)).strftime("%Y-%m-%dT%H:%M:%S")
    notification.locator("input[name=until]").fill(until)
    notification.locator("button[type=submit]").click()
    expect(page.locator("li.notification")).to_have_count(0, timeout=(snooze - 1) * 1000)
    expect(page.locator("#notification-badge .count")).to_have_attribute("data-unread", "0")
    expect(page.locator("li.notification.kind-send_failed")).to_be_visible(timeout=(snooze + 15) * 1000)
    snoozed = db.execute("SELECT snoozed_until FROM notifications WHERE kind = 'send_failed'").fetchone()
    assert snoozed["snoozed_until"] is not None
    page.locator("li.notification.kind-send_failed button[data-action]").click()  # mark read
    expect(page.locator("li.notification")).to_have_count(0)


def test_a_live_refresh_keeps_what_the_operator_typed(page: Page, db: psycopg.Connection) -> None:
    db.execute("INSERT INTO notifications (kind, body) VALUES ('send_failed', 'first failure')")
    page.goto("/inbox/notifications")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    first = page.locator("li.notification", has_text="first failure")
    # seconds not zero: a datetime-local input shows 15:41:00 as 15:41 (the value's shortest form)
    until = (dt.datetime.now() + dt.timedelta(hours=1)).replace(second=30).strftime("%Y-%m-%dT%H:%M:%S")
    first.locator("input[name=until]").fill(until)
    # a change arrives while the operator is half-way through: the list is refetched and swapped in
    db.execute("INSERT INTO notifications (kind, body) VALUES ('ai_no_reply', 'second arrives')")
    expect(page.locator("li.notification", has_text="second arrives")).to_be_visible()
    expect(first.locator("input[name=until]")).to_have_value(until)
    expect(first.locator("input[name=until]")).to_be_focused()
    first.locator("button[type=submit]").click()
    expect(first).to_have_count(0)
    expect(page.locator("li.notification")).to_have_count(1)
    snoozed = db.execute("SELECT snoozed_until FROM notifications WHERE body = 'first failure'").fetchone()
    assert snoozed["snoozed_until"] is not None


def test_page_recovers_when_the_live_connection_drops(
    browser: Browser, settings: Settings, client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    create_operator(database_url)
    port = free_port()
    # graceful shutdown would otherwise wait for the open event stream
    options = {"port": port, "timeout_graceful_shutdown": 1}
    first = ServerThread(create_app(settings), **options).__enter__()
    context = browser.new_context(base_url=first.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/inbox/login")
    page.fill("input[name=email]", "op@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

    # The web process's LISTEN connection is cut: it reconnects and the page catches up.
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN waypost_inbox%%'")
    post_inbound(client, "sent while the feed was down")
    expect(page.locator("li.conversation", has_text="sent while the feed was down")).to_be_visible()

    # The web process goes away altogether: the page says so, and catches up when it is back.
    first.__exit__(None, None, None)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "reconnecting")
    post_inbound(client, "sent while the page's server was down")  # through another web process
    with ServerThread(create_app(settings), **options):
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=20_000)
        expect(page.locator("li.conversation", has_text="sent while the page's server was down")).to_be_visible()
        post_inbound(client, "and after it came back")
        expect(page.locator("li.conversation", has_text="and after it came back")).to_be_visible()
        context.close()


def test_the_inbox_cannot_be_framed_and_runs_under_its_policy(
    page: Page, client: httpx.Client, db: psycopg.Connection
) -> None:
    """A page of the same site once framed a conversation and toggled its AI with one click."""
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    post_inbound(client, "frame me")
    conversation = db.execute("SELECT id FROM conversations").fetchone()["id"]
    page.goto(f"/inbox/conversations/{conversation}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    page.click("#pause-ai")  # the page's own script works under the policy
    expect(page.locator("#ai-state")).to_have_attribute("data-ai", "paused")
    page.click("#resume-ai")
    expect(page.locator("#ai-state")).to_have_attribute("data-ai", "on")
    page.goto("/inbox/notifications")
    assert [line for line in console if "Content Security Policy" in line] == []

    target = page.url.replace("/inbox/notifications", f"/inbox/conversations/{conversation}")
    html = f'<!doctype html><p>win a prize</p><iframe src="{target}" width="800" height="600"></iframe>'

    async def attacker(scope: dict, receive: object, send: object) -> None:  # another port: the same site
        await HTMLResponse(html)(scope, receive, send)  # type: ignore[arg-type]

    with ServerThread(attacker, lifespan="off") as evil:
        page.goto(evil.url)
        page.wait_for_load_state("load")
        [framed] = [frame for frame in page.frames if frame != page.main_frame]
        assert framed.locator("#pause-ai").count() == 0, framed.url
    assert db.execute("SELECT ai_enabled FROM conversations").fetchone()["ai_enabled"] is True


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real, decodable PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_an_image_appears_inline_and_a_voice_note_gets_a_player_once_downloaded(
    page: Page, client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    fake_graph.add_media("photo-1", png(40, 30, (200, 30, 30)), "image/png")
    fake_graph.add_media("voice-1", b"OggS" + bytes(2000), "audio/ogg")
    photo = payloads.media_message("image", "photo-1", mime_type="image/png", caption="the broken lamp")
    voice = payloads.media_message("audio", "voice-1", mime_type="audio/ogg; codecs=opus", voice=True)
    for message in (photo, voice):
        assert post_webhook(client, payloads.dumps(payloads.inbound(message))).status_code == 200
    page.locator("li.conversation a").first.click()
    expect(page.locator(".message.inbound").first).to_contain_text("the broken lamp")
    expect(page.locator(".media[data-media-status=pending]")).to_have_count(2)  # no worker yet

    start_worker()  # the page follows the downloads live
    image = page.locator(".media[data-media-status=stored] img")
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 40", arg=image.element_handle())
    expect(page.locator(".media[data-media-status=stored] audio")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "media.png"), full_page=True)


def test_an_open_conversation_shows_an_edit_a_deletion_and_a_phone_app_echo_live(
    page: Page, client: httpx.Client, db: psycopg.Connection
) -> None:
    """Edits and deletions show on their message, the earlier text one click away; a message sent from
    the WhatsApp Business app shows as such and pauses the AI, all without a reload."""
    original = payloads.text_message("Table for 2 at 8?")
    assert post_webhook(client, payloads.dumps(payloads.inbound(original))).status_code == 200
    conversation = db.execute("SELECT id FROM conversations").fetchone()["id"]
    page.goto(f"/inbox/conversations/{conversation}")
    message = page.locator("li.message", has_text="Table for")
    expect(message).to_be_visible()

    edit = payloads.edit_message(original["id"], "Table for 4 at 8?")
    assert post_webhook(client, payloads.dumps(payloads.inbound(edit))).status_code == 200
    expect(message.locator(".body")).to_have_text("Table for 4 at 8?")
    message.locator("details.edited summary").click()
    expect(message.locator("p.earlier")).to_have_text("Table for 2 at 8?")

    revoke = payloads.revoke_message(original["id"])
    assert post_webhook(client, payloads.dumps(payloads.inbound(revoke))).status_code == 200
    expect(message.locator("[data-revoked]")).to_contain_text("deleted by the contact")

    echo = payloads.echo_message("See you at 8!")
    assert post_webhook(client, payloads.dumps(payloads.echoes(echo))).status_code == 200
    sent = page.locator("li.message.outbound", has_text="See you at 8!")
    expect(sent.locator("[data-source=phone_app]")).to_be_visible()
    expect(page.locator("#ai-state")).to_have_attribute("data-ai", "paused")


def test_buttons_offered_and_the_tapped_choice_show_live(
    page: Page, client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    from tests.test_interactive import button_tap

    start_worker()
    post_inbound(client, "Can I book an appointment?")
    page.locator("li.conversation a").first.click()
    offered = page.locator(".message.outbound ul.choices[data-interactive=button] .chip")
    expect(offered).to_have_text(["Friday 14:00", "Saturday 10:00", "Another time"])
    assert page.locator("ul.choices a, ul.choices button").count() == 0  # shown as sent, not clickable
    question = db.execute("SELECT wa_message_id FROM messages WHERE type = 'interactive'").fetchone()
    tap = button_tap(question["wa_message_id"], "slot_other", "Another time")
    assert post_webhook(client, payloads.dumps(payloads.inbound(tap))).status_code == 200
    chosen = page.locator(".tap[data-tap-id=slot_other]")
    expect(chosen.locator(".chip.chosen")).to_have_text("Another time")
    expect(page.locator(".message.inbound", has=chosen).locator("blockquote.quoted")).to_contain_text(
        "Which time suits you?"
    )
    expect(page.locator(".message.outbound .list-button")).to_have_text("☰ See times")  # the list that answered it
    page.screenshot(path=str(ARTIFACTS / "buttons.png"), full_page=True)


def test_a_voice_notes_transcript_shows_under_its_player_and_a_photo_inline(
    page: Page, client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker
) -> None:
    from tests.test_ai_media import FakeOpenAI  # the fake OpenAI-compatible transcription server

    fake = FakeOpenAI(transcript="Can I come by on Saturday morning to pick it up?")
    fake_graph.add_media("photo-2", png(40, 30, (30, 160, 60)), "image/png")
    fake_graph.add_media("voice-2", b"OggS" + bytes(4000), "audio/ogg")
    photo = payloads.media_message("image", "photo-2", mime_type="image/png", caption="the receipt")
    voice = payloads.media_message("audio", "voice-2", mime_type="audio/ogg; codecs=opus", voice=True)
    with ServerThread(fake.app) as server:
        start_worker(WAYPOST_TRANSCRIBE_URL=f"{server.url}/v1")
        for message in (photo, voice):
            assert post_webhook(client, payloads.dumps(payloads.inbound(message))).status_code == 200
        page.locator("li.conversation a").first.click()
        image = page.locator(".media[data-media-status=stored] img")
        expect(image).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth === 40", arg=image.element_handle())
        transcript = page.locator(".media[data-media-status=stored] audio + p.transcript")
        expect(transcript).to_have_text(fake.transcript)  # live: the page follows the transcription
    # shown under the player (measured in the page: a live refresh may replace the elements meanwhile)
    page.wait_for_function(
        """() => {
            const player = document.querySelector(".media[data-media-status=stored] audio");
            const text = player && player.nextElementSibling;
            if (!text || !text.classList.contains("transcript")) return false;
            const above = player.getBoundingClientRect(), below = text.getBoundingClientRect();
            return above.height > 0 && below.height > 0 && below.top >= above.bottom - 1;
        }"""
    )
    page.screenshot(path=str(ARTIFACTS / "voice_transcript.png"), full_page=True)


def test_the_list_shows_who_owns_each_conversation_and_a_handover_goes_back_in_one_click(
    page: Page, client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    """AI, waiting for a person with the reason (live, as the AI hands over), a named operator; the
    banner of a waiting conversation, and "Hand back to AI"."""
    from waypost.sql import query

    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    people = {"16505551234": "Ana Lima", "4915112345678": "Ben Ode", "447700900123": "Cy Park"}
    for wa_id, name in people.items():
        message = payloads.text_message(f"hello, {name} here", wa_id=wa_id)
        contacts = [{"profile": {"name": name}, "wa_id": wa_id}]
        assert post_webhook(client, payloads.dumps(payloads.inbound(message, contacts=contacts))).status_code == 200
    ids = {r["contact_name"]: r["id"] for r in db.execute("SELECT id, contact_name FROM conversations").fetchall()}
    sam = create_operator(database_url, "sam@example.com")

    def hand_over(name: str, reason: str) -> None:  # as worker/handover.py does
        db.execute(query("handover_pause_ai"), {"conversation_id": ids[name], "reason": reason})

    hand_over("Cy Park", "the customer asked for a person")
    db.execute(query("handover_operator_answered"), {"conversation_id": ids["Cy Park"], "operator_id": sam["id"]})
    row = {name: page.locator("li.conversation", has_text=name).locator(".owner") for name in people.values()}
    expect(row["Cy Park"]).to_have_attribute("data-owner", "operator")
    expect(row["Cy Park"]).to_have_text("sam@example.com")
    expect(row["Ana Lima"]).to_have_text("AI")
    # the AI hands Ben over while the list is open: his row changes live
    hand_over("Ben Ode", "the customer wants a refund")
    expect(row["Ben Ode"]).to_have_attribute("data-owner", "waiting")
    expect(row["Ben Ode"]).to_contain_text("Waiting for a person since")
    expect(row["Ben Ode"]).to_contain_text("the customer wants a refund")
    page.screenshot(path=str(ARTIFACTS / "ownership.png"), full_page=True)

    row["Ben Ode"].click()
    banner = page.locator("#handover-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("the customer wants a refund")
    page.screenshot(path=str(ARTIFACTS / "handover-banner.png"))
    page.click("#hand-back")
    expect(page.locator("#ai-state")).to_have_attribute("data-ai", "on")
    expect(banner).to_have_count(0)
    back = db.execute("SELECT ai_enabled, handed_over_at FROM conversations WHERE id = %s", (ids["Ben Ode"],))
    assert back.fetchone() == {"ai_enabled": True, "handed_over_at": None}
    page.goto("/inbox")
    expect(row["Ben Ode"]).to_have_text("AI")
    assert [line for line in console if "Content Security Policy" in line] == []
