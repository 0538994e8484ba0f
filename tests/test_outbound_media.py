"""Outbound media, operator reactions and replies: an operator's file is checked against what
WhatsApp sends before anything is stored, uploaded to Meta's media endpoint by the worker once, and
sent through the same claim/send/record path as text (the AI's files: tests/test_ai_files.py).
Real PostgreSQL, web server, worker processes and the fake Graph API."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.conftest import (
    WebServer,
    WorkerProcess,
    post_webhook,
    settled,
    wait_for,
    wait_until,
    waypost_env,
)
from tests.faults.harness import fault_settings, settle
from tests.files import PDF, SVG, png
from tests.inbox_client import PASSWORD, Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.browser import CHROMIUM_FLAGS, chromium_path
from waypost.devtools.fake_graph import Behaviour, FakeGraph
from waypost.devtools.net import free_port, wait_until_ready
from waypost.settings import Settings


def setup_conversation(
    client: httpx.Client, db: psycopg.Connection, database_url: str, text: str = "hello"
) -> tuple[Inbox, int, str]:
    """A conversation with one inbound message (its wamid returned) and a signed-in operator."""
    contacts = [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}]
    message = payloads.text_message(text)
    assert post_webhook(client, payloads.dumps(payloads.inbound(message, contacts=contacts))).status_code == 200
    create_operator(database_url)
    return Inbox(client), conversation_id(db), str(message["id"])


def send_file(
    inbox: Inbox,
    cid: int,
    data: bytes,
    mime_type: str,
    filename: str,
    *,
    csrf: str | None = "",
    **fields: str,
) -> httpx.Response:
    headers = {} if csrf is None else {"X-CSRF-Token": csrf or inbox.csrf}
    return inbox.client.post(
        f"/api/inbox/conversations/{cid}/files",
        files={"file": (filename, data, mime_type)},
        data=fields,
        headers=headers,
    )


def sends_of(fake: FakeGraph, kind: str) -> list:
    return [r for r in fake.accepted() if r.body.get("type") == kind]


def test_an_operators_pdf_is_uploaded_once_and_sent_once_even_when_the_form_is_resubmitted(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, cid, _ = setup_conversation(client, db, database_url)
    key = "pricelist-0001"
    first = send_file(inbox, cid, PDF, "application/pdf", "Price list.pdf", caption="Our prices", client_key=key)
    again = send_file(inbox, cid, PDF, "application/pdf", "Price list.pdf", caption="Our prices", client_key=key)
    assert first.status_code == 202, first.text
    assert again.status_code == 202 and again.json()["duplicate"] is True
    message = first.json()["message"]
    assert message["id"] == again.json()["message"]["id"] and message["type"] == "document"
    assert message["media"]["filename"] == "Price list.pdf" and message["media"]["size"] == len(PDF)
    assert db.execute("SELECT count(*) AS n FROM media_chunks").fetchone()["n"] == 1  # stored once

    start_worker()
    row = wait_for(db, "SELECT * FROM messages WHERE id = %s AND status = 'sent'", [message["id"]])
    settled(db)
    (upload,) = fake_graph.accepted_uploads()
    assert (upload.mime_type, upload.filename, upload.size) == ("application/pdf", "Price list.pdf", len(PDF))
    assert upload.sha256 == hashlib.sha256(PDF).hexdigest()
    (sent,) = sends_of(fake_graph, "document")
    assert sent.body["document"] == {"id": upload.media_id, "caption": "Our prices", "filename": "Price list.pdf"}
    assert sent.body["biz_opaque_callback_data"] == row["idempotency_key"]
    media = db.execute("SELECT * FROM media WHERE message_id = %s", [message["id"]]).fetchone()
    assert media["wa_media_id"] == upload.media_id and media["uploaded_at"] is not None
    # shown in the inbox like a contact's file, served through the authenticated route
    shown = inbox.get(f"/api/inbox/conversations/{cid}").json()["messages"][-1]
    assert shown["media"]["status"] == "stored" and shown["body"] == "Our prices"
    served = client.get(f"/inbox/media/{shown['media']['id']}")
    assert served.status_code == 200 and served.content == PDF
    assert served.headers["content-type"] == "application/octet-stream"  # a PDF is never rendered inline


def test_files_meta_would_refuse_are_refused_before_anything_is_stored_or_sent(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph
) -> None:
    inbox, cid, _ = setup_conversation(client, db, database_url)
    refused = {
        "svg declared as svg": (SVG, "image/svg+xml", "x.svg", {}, 415, "UNSUPPORTED_FILE"),
        "svg declared as png": (SVG, "image/png", "x.png", {}, 415, "UNSUPPORTED_FILE"),
        "html as a pdf": (b"<html><body>hi</body></html>", "application/pdf", "x.pdf", {}, 415, "UNSUPPORTED_FILE"),
        "a 6 MB png": (png(8, 8) + bytes(6 * 1024 * 1024), "image/png", "big.png", {}, 413, "FILE_TOO_LARGE"),
        "a png as a document": (png(8, 8), "image/png", "x.png", {"kind": "document"}, 415, "UNSUPPORTED_FILE"),
        "an empty file": (b"", "application/pdf", "x.pdf", {}, 415, "UNSUPPORTED_FILE"),
        "a caption on audio": (b"OggS" + bytes(100), "audio/ogg", "a.ogg", {"caption": "hi"}, 400, "BAD_INPUT"),
    }
    for what, (data, mime_type, name, fields, status, code) in refused.items():
        answer = send_file(inbox, cid, data, mime_type, name, **fields)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (what, answer.text)
        assert answer.json()["ok"] is False and answer.json()["error"], what
    no_csrf = send_file(inbox, cid, PDF, "application/pdf", "x.pdf", csrf=None)
    assert (no_csrf.status_code, no_csrf.json()["code"]) == (403, "CSRF")
    outbound = db.execute("SELECT count(*) AS n FROM messages WHERE direction = 'outbound'").fetchone()
    assert outbound["n"] == 0 and db.execute("SELECT count(*) AS n FROM media").fetchone()["n"] == 0
    assert fake_graph.uploads == [] and fake_graph.requests == []


def test_an_upload_that_fails_retryably_is_retried_then_sent_once(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, cid, _ = setup_conversation(client, db, database_url)
    inbox.post(f"/api/inbox/conversations/{cid}/ai", {"enabled": False})
    fake_graph.upload_script.extend([Behaviour(status=503), Behaviour(status=500, code=131000)])
    image = png(40, 30)
    answer = send_file(inbox, cid, image, "image/png", "photo.png", caption="the colour")
    assert answer.status_code == 202, answer.text
    start_worker()
    message_id = answer.json()["message"]["id"]
    row = wait_for(db, "SELECT * FROM messages WHERE id = %s AND status = 'sent'", [message_id], timeout=30)
    assert row["send_attempts"] == 3
    assert [u.status for u in fake_graph.uploads] == [503, 500, 200]
    (sent,) = sends_of(fake_graph, "image")
    assert sent.body["image"] == {"id": fake_graph.accepted_uploads()[0].media_id, "caption": "the colour"}
    assert len(fake_graph.requests) == 1  # no send went out before the upload succeeded


def test_an_upload_meta_refuses_fails_the_message_without_a_send(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, cid, _ = setup_conversation(client, db, database_url)
    inbox.post(f"/api/inbox/conversations/{cid}/ai", {"enabled": False})
    fake_graph.upload_script.append(Behaviour(status=400, code=100))
    answer = send_file(inbox, cid, PDF, "application/pdf", "p.pdf")
    start_worker()
    row = wait_for(db, "SELECT * FROM messages WHERE id = %s AND status = 'failed'", [answer.json()["message"]["id"]])
    assert (row["error"][0]["code"], row["error"][0]["title"]) == (100, "Meta refused the file's upload")
    assert fake_graph.requests == [] and len(fake_graph.uploads) == 1
    wait_for(db, "SELECT 1 FROM notifications WHERE kind = 'send_failed' AND message_id = %s", [row["id"]])


@pytest.mark.parametrize("taken", [False, True], ids=["meta-never-took-it", "meta-took-it-status-arrives"])
def test_a_media_send_retried_after_a_crash_sends_once(
    settings: Settings, fake_graph: FakeGraph, database_url: str, db: psycopg.Connection, tmp_path: Path, taken: bool
) -> None:
    """The worker is SIGKILLed while Meta holds the send (the file already uploaded). Not taken: the
    next worker sends the file Meta already holds, without a second upload. Taken: its status webhook
    records it, and the next worker sends nothing. Either way the contact gets the file once."""
    settings = fault_settings(settings, whatsapp_api_base=fake_graph.url)
    with WebServer(settings) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        fake_graph.webhook_url = web.url + "/api/webhooks/whatsapp"
        fake_graph.auto_statuses = ("sent",)
        inbox, cid, _ = setup_conversation(client, db, database_url)
        inbox.post(f"/api/inbox/conversations/{cid}/ai", {"enabled": False})
        answer = send_file(inbox, cid, PDF, "application/pdf", "p.pdf", caption="as promised")
        message_id = answer.json()["message"]["id"]
        # the send hangs: Meta took it (its answer lost with the worker) or not
        fake_graph.script.append(Behaviour(status=200 if taken else 503, hang=60, accept=taken))
        first = WorkerProcess(settings, tmp_path / "worker0.log")
        first.wait_ready()
        wait_until(lambda: fake_graph.requests, what="the send in flight")  # Meta holds it now
        first.proc.kill()  # SIGKILL mid-send: no cleanup, the claim left in 'sending'
        first.proc.wait()
        first.stop()
        if not taken:  # nothing can have recorded it
            status = db.execute("SELECT status FROM messages WHERE id = %s", [message_id]).fetchone()["status"]
            assert status == "sending"
        second = WorkerProcess(settings, tmp_path / "worker1.log")
        second.wait_ready()
        try:
            settle(database_url, web.url)
        finally:
            second.stop()
    row = db.execute("SELECT * FROM messages WHERE id = %s", [message_id]).fetchone()
    assert row["status"] == "sent"
    assert len(fake_graph.uploads) == 1  # Meta's id was kept: a retry never uploads again
    assert len(fake_graph.requests) == (1 if taken else 2) and len(sends_of(fake_graph, "document")) == 1
    (sent,) = sends_of(fake_graph, "document")
    assert sent.body["document"]["id"] == fake_graph.uploads[0].media_id and sent.wa_message_id == row["wa_message_id"]


def test_operator_reaction_and_reply_to_reach_the_graph_api_with_the_right_shape(
    client: httpx.Client, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, start_worker
) -> None:
    inbox, cid, wamid = setup_conversation(client, db, database_url, "Is Friday 2 pm good?")
    inbox.post(f"/api/inbox/conversations/{cid}/ai", {"enabled": False})
    inbound_id = db.execute("SELECT id FROM messages WHERE wa_message_id = %s", [wamid]).fetchone()["id"]
    path = f"/api/inbox/conversations/{cid}"
    reacted = inbox.post(f"{path}/messages/{inbound_id}/reaction", {"emoji": "👍", "client_key": "react-000001"})
    assert reacted.status_code == 202, reacted.text
    assert inbox.post(f"{path}/messages/{inbound_id}/reaction", {"emoji": "👍", "client_key": "react-000001"}).json()[
        "duplicate"
    ]
    replied = inbox.post(f"{path}/messages", {"body": "Friday works", "reply_to": inbound_id})
    assert replied.status_code == 202, replied.text
    filed = send_file(inbox, cid, PDF, "application/pdf", "map.pdf", reply_to=str(inbound_id))
    assert filed.status_code == 202, filed.text
    # refused: an unknown message, a message of another conversation, an outbound reaction target
    assert inbox.post(f"{path}/messages", {"body": "x", "reply_to": 999999}).status_code == 404
    assert inbox.post(f"{path}/messages/{replied.json()['message']['id']}/reaction", {"emoji": "👍"}).status_code == 404
    assert inbox.post(f"{path}/messages/{inbound_id}/reaction", {"emoji": "👍" * 17}).status_code == 422
    start_worker()
    settled(db)
    (reaction,) = sends_of(fake_graph, "reaction")
    assert reaction.body["reaction"] == {"message_id": wamid, "emoji": "👍"} and "context" not in reaction.body
    (text,) = sends_of(fake_graph, "text")
    assert text.body["context"] == {"message_id": wamid} and text.body["text"]["body"] == "Friday works"
    (document,) = sends_of(fake_graph, "document")
    assert document.body["context"] == {"message_id": wamid}
    shown = {m["id"]: m for m in inbox.get(path).json()["messages"]}
    assert shown[inbound_id]["operator_reaction"] == "👍"
    assert shown[replied.json()["message"]["id"]]["quoted"]["id"] == inbound_id
    assert shown[replied.json()["message"]["id"]]["quoted"]["body"] == "Is Friday 2 pm good?"
    # removing the reaction: an empty emoji, sent as Meta expects
    removed = inbox.post(f"{path}/messages/{inbound_id}/reaction", {"emoji": ""})
    assert removed.status_code == 202, removed.text
    settled(db)
    assert sends_of(fake_graph, "reaction")[-1].body["reaction"] == {"message_id": wamid, "emoji": ""}
    assert {m["id"]: m for m in inbox.get(path).json()["messages"]}[inbound_id]["operator_reaction"] is None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_an_operator_attaches_a_photo_replies_to_a_message_and_reacts_in_the_browser(
    browser: Browser,
    web: WebServer,
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    fake_graph: FakeGraph,
    start_worker,
) -> None:
    _, cid, wamid = setup_conversation(client, db, database_url, "Can you show me the blue one?")
    start_worker()
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND status = 'sent'")
    context = browser.new_context(base_url=web.url, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"/inbox/conversations/{cid}")
        page.fill("input[name=email]", "op@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=15_000)
        contact_message = page.locator("li.message.inbound", has_text="the blue one")
        # reply to the contact's message with a photo and a caption
        contact_message.get_by_role("button", name="Reply").click()
        expect(page.locator("#replying-to")).to_contain_text("Can you show me the blue one?")
        page.set_input_files(
            "#file-form input[type=file]", {"name": "blue.png", "mimeType": "image/png", "buffer": png(64, 48)}
        )
        page.fill("#file-form input[name=caption]", "This one")
        page.click("#file-form button[type=submit]")
        sent = page.locator("li.message.author-operator", has_text="This one")
        expect(sent).to_have_attribute("data-status", "sent", timeout=20_000)
        expect(sent.locator(".media img")).to_be_visible()
        expect(sent.locator("blockquote.quoted")).to_contain_text("the blue one")
        expect(page.locator("#replying-to")).to_be_hidden()
        assert sent.locator(".media img").evaluate("img => img.naturalWidth") == 64  # served and decoded
        # react to the contact's message
        contact_message.locator('button[title="react 👍"]').click()
        expect(contact_message.locator("[data-operator-reaction]")).to_have_text("👍", timeout=20_000)
    finally:
        context.close()
    (image,) = sends_of(fake_graph, "image")
    assert image.body["image"]["caption"] == "This one" and image.body["context"] == {"message_id": wamid}
    wait_until(lambda: sends_of(fake_graph, "reaction"), what="the reaction's send")
    assert sends_of(fake_graph, "reaction")[0].body["reaction"] == {"message_id": wamid, "emoji": "👍"}
    assert len(fake_graph.accepted_uploads()) == 1


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_100_mb_document_is_stored_and_uploaded_in_bounded_memory(
    settings: Settings, db: psycopg.Connection, database_url: str, fake_graph: FakeGraph, tmp_path: Path
) -> None:
    """The web process and the worker each hold a chunk of the file at a time, never the file."""
    size = 100 * 1024 * 1024 - 64  # Meta's limit for documents
    big = tmp_path / "catalogue.pdf"
    with big.open("wb") as out:
        out.write(b"%PDF-1.7\n")
        for _ in range(100):
            out.write(os.urandom(1024 * 1024))
        out.truncate(size)
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "waypost.cli", "serve", "--port", str(port)],
        env=waypost_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, timeout=20)
        with httpx.Client(base_url=url, timeout=120) as client:
            inbox, cid, _ = setup_conversation(client, db, database_url)
            inbox.post(f"/api/inbox/conversations/{cid}/ai", {"enabled": False})
            web_before = peak_rss_mb(web.pid)
            started = time.perf_counter()
            with big.open("rb") as file:
                answer = inbox.client.post(
                    f"/api/inbox/conversations/{cid}/files",
                    files={"file": ("catalogue.pdf", file, "application/pdf")},
                    headers={"X-CSRF-Token": inbox.csrf},
                )
            stored_s = time.perf_counter() - started
            assert answer.status_code == 202, answer.text
            web_peak = peak_rss_mb(web.pid)
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.wait_ready()
        worker_before = peak_rss_mb(worker.proc.pid)
        started = time.perf_counter()
        wait_for(db, "SELECT 1 FROM messages WHERE id = %s AND status = 'sent'", [answer.json()["message"]["id"]], 180)
        sent_s = time.perf_counter() - started
        worker_peak = peak_rss_mb(worker.proc.pid)
    finally:
        if worker is not None:
            worker.stop()
        web.terminate()
        web.wait(timeout=15)
    print(
        f"\n100 MiB document: web peak RSS {web_before:.0f} -> {web_peak:.0f} MiB (stored in {stored_s:.1f} s), "
        f"worker {worker_before:.0f} -> {worker_peak:.0f} MiB (uploaded and sent in {sent_s:.1f} s)"
    )
    (upload,) = fake_graph.accepted_uploads()
    assert upload.size == size
    assert web_peak - web_before < 40 and worker_peak - worker_before < 40, (web_before, web_peak, worker_peak)


def test_the_fake_graph_api_refuses_uploads_as_meta_does(fake_graph: FakeGraph) -> None:
    def upload(data: bytes, mime_type: str, product: str = "whatsapp", token: str = "") -> httpx.Response:
        return httpx.post(
            f"{fake_graph.url}/v25.0/123/media",
            data={"messaging_product": product, "type": mime_type},
            files={"file": ("f", data, mime_type)},
            headers={"Authorization": f"Bearer {token or fake_graph.access_token}"},
        )

    assert upload(SVG, "image/svg+xml").json()["error"]["code"] == 100
    assert upload(png(8, 8) + bytes(5 * 1024 * 1024), "image/png").json()["error"]["code"] == 100
    assert upload(PDF, "application/pdf", product="sms").status_code == 400
    assert upload(PDF, "application/pdf", token="wrong").status_code == 401
    httpx.post(f"{fake_graph.url}/_fake/script?for=uploads", json=[{"status": 503}])  # fail on demand
    assert upload(PDF, "application/pdf").status_code == 503
    media_id = upload(PDF, "application/pdf").json()["id"]
    assert [u.status for u in fake_graph.uploads] == [400, 400, 400, 503, 200]  # the bad token is not recorded
    looked_up = httpx.get(
        f"{fake_graph.url}/v25.0/{media_id}", headers={"Authorization": f"Bearer {fake_graph.access_token}"}
    )
    assert looked_up.json()["sha256"] == hashlib.sha256(PDF).hexdigest()  # a lookup finds what was uploaded


def test_the_file_route_has_its_own_body_limit_of_a_100_mb_document_and_its_form(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    inbox, cid, _ = setup_conversation(client, db, database_url)
    boundary = "waypost-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n%PDF-1.7\n"
    ).encode()

    def body(megabytes: int) -> Iterator[bytes]:  # streamed, chunked: the limit counts as it reads
        yield head
        for _ in range(megabytes):
            yield bytes(1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = client.post(
        f"/api/inbox/conversations/{cid}/files",
        content=body(101),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "X-CSRF-Token": inbox.csrf},
        timeout=60,
    )
    assert (answer.status_code, answer.json()["code"]) == (413, "BODY_TOO_LARGE")
    assert db.execute("SELECT count(*) AS n FROM media").fetchone()["n"] == 0
    # a 100 KB file fits the file route; the same size to the text route is refused: each has its own
    assert send_file(inbox, cid, PDF + bytes(100 * 1024), "application/pdf", "p.pdf").status_code == 202
    path = f"/api/inbox/conversations/{cid}/messages"
    assert inbox.client.post(path, content=bytes(100 * 1024), headers={"X-CSRF-Token": inbox.csrf}).status_code == 413
