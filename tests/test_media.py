"""Inbound media: the message is stored in the webhook's transaction with its download queued; the
download is a job of its own (fresh URL each attempt, token only to Meta's media hosts, SHA-256 and
size checked, retried, given up visibly); the inbox serves the file, inline only when harmless."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import ACCESS_TOKEN, CRON_SECRET, post_webhook, wait_until
from tests.inbox_client import Inbox, conversation_id, create_operator
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings
from webhook.inbox.media import disposition, inline_type
from webhook.media import media_of
from webhook.payload import InboundMessage
from worker.graph import GraphClient, OffHost
from worker.media import _hex

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 5000  # 1.2 MB: more than one chunk
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


def b64_sha256(data: bytes) -> str:
    """The file's SHA-256 as Meta's webhooks write it (base64)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def post_media(client: httpx.Client, message: dict[str, Any]) -> None:
    answer = post_webhook(client, payloads.dumps(payloads.inbound(message)))
    assert answer.status_code == 200, answer.text


def media_row(db: psycopg.Connection, wamid: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT md.* FROM media md JOIN messages m ON m.id = md.message_id WHERE m.wa_message_id = %s", (wamid,)
    ).fetchone()
    assert row is not None, f"no media row for {wamid}"
    return row


def settled_media(db: psycopg.Connection, wamid: str) -> dict[str, Any]:
    return wait_until(lambda: (row := media_row(db, wamid))["status"] != "pending" and row, what="the download")


def stored_bytes(db: psycopg.Connection, media_id: int) -> bytes:
    rows = db.execute("SELECT data FROM media_chunks WHERE media_id = %s ORDER BY seq", (media_id,)).fetchall()
    return b"".join(bytes(row["data"]) for row in rows)


def test_an_image_is_downloaded_by_a_job_of_its_own_and_shown_inline(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    database_url: str,
) -> None:
    fake_graph.add_media("media-image", JPEG, "image/jpeg")
    message = payloads.media_message(
        "image", "media-image", mime_type="image/jpeg", sha256=b64_sha256(JPEG), caption="my receipt"
    )
    post_media(client, message)
    # stored with the message, downloaded by nobody yet: no worker runs
    assert media_row(db, message["id"])["status"] == "pending"
    assert fake_graph.media_requests == []

    start_worker()
    stored = settled_media(db, message["id"])
    assert (stored["status"], stored["attempts"], stored["byte_size"]) == ("stored", 1, len(JPEG))
    assert stored_bytes(db, stored["id"]) == JPEG
    chunks = db.execute("SELECT count(*) AS n FROM media_chunks WHERE media_id = %s", (stored["id"],)).fetchone()
    assert chunks["n"] == 2
    # a fresh URL, then the file: the token went to the fake Graph API (127.0.0.1) only
    assert [(what, auth) for what, _, auth in fake_graph.media_requests] == [
        ("lookup", f"Bearer {ACCESS_TOKEN}"),
        ("download", f"Bearer {ACCESS_TOKEN}"),
    ]

    create_operator(database_url)
    inbox = Inbox(client)
    page = inbox.get(f"/inbox/conversations/{conversation_id(db)}").text
    assert f'<img src="/inbox/media/{stored["id"]}"' in page and "my receipt" in page
    served = inbox.get(f"/inbox/media/{stored['id']}")
    assert served.status_code == 200 and served.content == JPEG
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["content-disposition"].startswith("inline")
    assert served.headers["x-content-type-options"] == "nosniff"
    listed = inbox.get(f"/api/inbox/conversations/{conversation_id(db)}").json()
    assert next(m["media"] for m in listed["messages"] if m["media"])["status"] == "stored"
    with httpx.Client(base_url=str(client.base_url)) as stranger:
        refused = stranger.get(f"/inbox/media/{stored['id']}")
    assert refused.status_code == 303 and "/inbox/login" in refused.headers["location"]


def test_a_download_that_fails_twice_is_stored_on_the_third_attempt(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    fake_graph.add_media("media-flaky", PNG, "image/png", fail_lookups=1, fail_downloads=1)
    message = payloads.media_message("image", "media-flaky", mime_type="image/png")
    post_media(client, message)
    start_worker()
    stored = settled_media(db, message["id"])
    assert (stored["status"], stored["attempts"]) == ("stored", 3)
    assert stored_bytes(db, stored["id"]) == PNG
    # each attempt asked for a fresh URL
    assert [what for what, _, _ in fake_graph.media_requests] == ["lookup", "lookup", "download", "lookup", "download"]


def test_a_download_that_never_succeeds_keeps_the_message_tells_the_operators_and_the_reply_goes_out(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    database_url: str,
) -> None:
    fake_graph.add_media("media-gone", PNG, "image/png", fail_lookups=100)
    message = payloads.media_message("image", "media-gone", mime_type="image/png", caption="what does this cost?")
    post_media(client, message)
    start_worker(WAYPOST_MEDIA_MAX_ATTEMPTS="3")
    failed = settled_media(db, message["id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 3)
    assert "HTTP 503" in failed["last_error"]
    notification = db.execute("SELECT * FROM notifications WHERE kind = 'media_failed'").fetchone()
    assert notification is not None and notification["message_id"] == failed["message_id"]
    # the message and its caption's reply are not held up by the file
    wait_until(lambda: fake_graph.accepted(), what="the reply to the caption")
    create_operator(database_url)
    page = Inbox(client).get(f"/inbox/conversations/{conversation_id(db)}").text
    assert "could not be fetched" in page and "what does this cost?" in page


def test_a_media_url_off_metas_hosts_is_refused_and_never_fetched(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    # "localhost" reaches the same fake, but it is not in WHATSAPP_MEDIA_HOSTS (127.0.0.1 in tests)
    fake_graph.add_media("media-elsewhere", PNG, "image/png", url_host="localhost")
    message = payloads.media_message("image", "media-elsewhere", mime_type="image/png")
    post_media(client, message)
    worker = start_worker()
    failed = settled_media(db, message["id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert "not one of WHATSAPP_MEDIA_HOSTS" in failed["last_error"]
    assert [what for what, _, _ in fake_graph.media_requests] == ["lookup"]
    assert "not one of WHATSAPP_MEDIA_HOSTS" in worker.output()
    assert ACCESS_TOKEN not in worker.output()


def test_a_file_whose_hash_does_not_match_is_not_kept(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    fake_graph.add_media("media-corrupt", PNG, "image/png", sha256="0" * 64)
    message = payloads.media_message("image", "media-corrupt", mime_type="image/png")
    post_media(client, message)
    start_worker(WAYPOST_MEDIA_MAX_ATTEMPTS="2")
    failed = settled_media(db, message["id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert "SHA-256" in failed["last_error"]
    assert stored_bytes(db, failed["id"]) == b""  # a failed attempt leaves no chunk behind


def test_an_svg_or_a_file_that_lies_about_its_type_is_only_ever_a_download(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    database_url: str,
) -> None:
    fake_graph.add_media("media-svg", SVG, "image/svg+xml")
    fake_graph.add_media("media-liar", b"<html><script>alert(1)</script></html>", "image/png")
    svg = payloads.media_message("document", "media-svg", mime_type="image/svg+xml", filename="logo.svg")
    liar = payloads.media_message("image", "media-liar", mime_type="image/png")
    post_media(client, svg)
    post_media(client, liar)
    start_worker()
    create_operator(database_url)
    inbox = Inbox(client)
    for message, name in ((svg, "logo.svg"), (liar, "image")):
        stored = settled_media(db, message["id"])
        assert stored["status"] == "stored"
        served = inbox.get(f"/inbox/media/{stored['id']}")
        assert served.status_code == 200
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.headers["content-disposition"].startswith(f'attachment; filename="{name}"')
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in served.headers["content-security-policy"]


def test_a_file_name_from_the_contact_cannot_break_the_header() -> None:
    header = disposition("document", 'price "list"\r\nSet-Cookie: x=1\\.pdf', inline=False)
    assert "\r" not in header and "\n" not in header
    assert header.startswith("attachment; filename=\"price 'list'Set-Cookie: x=1_.pdf\"; filename*=UTF-8''")
    assert disposition("image", "\x00\x1f", inline=True) == "inline; filename=\"image\"; filename*=UTF-8''image"


def test_inline_types_need_the_bytes_to_agree() -> None:
    assert inline_type("image/png", PNG[:16]) == "image/png"
    assert inline_type("image/jpeg; charset=x", JPEG[:16]) == "image/jpeg"
    assert inline_type("image/png", JPEG[:16]) is None
    assert inline_type("image/svg+xml", SVG[:16]) is None
    assert inline_type("text/html", b"<html>") is None
    assert inline_type(None, PNG[:16]) is None


def test_meta_sha256_is_read_in_hex_or_base64() -> None:
    digest = hashlib.sha256(PNG).hexdigest()
    assert _hex(digest.upper()) == digest
    assert _hex(b64_sha256(PNG)) == digest
    assert _hex("not a hash") is None and _hex(None) is None and _hex("") is None


def test_the_sweep_deletes_file_bytes_past_their_retention_and_keeps_the_message(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    old, recent = (payloads.media_message("image", f"media-{n}", mime_type="image/png") for n in ("old", "recent"))
    for message in (old, recent):
        post_media(client, message)
        media_id = media_row(db, message["id"])["id"]
        db.execute("INSERT INTO media_chunks (media_id, seq, data) VALUES (%s, 0, %s)", (media_id, PNG))
        db.execute(
            "UPDATE media SET status = 'stored', byte_size = %s, stored_at = now() WHERE id = %s", (len(PNG), media_id)
        )
    days = settings.media_retention_days
    db.execute(
        "UPDATE media SET stored_at = now() - make_interval(days => %s) - interval '1 hour' WHERE id = %s",
        (int(days), media_row(db, old["id"])["id"]),
    )
    report = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"}).json()
    assert report["media_purged"] == 1
    purged, kept = media_row(db, old["id"]), media_row(db, recent["id"])
    assert (purged["status"], kept["status"]) == ("purged", "stored")
    assert purged["purged_at"] is not None and stored_bytes(db, purged["id"]) == b""
    assert stored_bytes(db, kept["id"]) == PNG
    assert db.execute("SELECT count(*) AS n FROM messages WHERE wa_message_id = %s", (old["id"],)).fetchone()["n"] == 1


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_100_mb_document_is_stored_with_bounded_worker_memory(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    document = os.urandom(100 * 1024 * 1024)  # Meta's limit for documents, exactly
    fake_graph.add_media("media-big", document, "application/pdf")
    message = payloads.media_message("document", "media-big", mime_type="application/pdf", filename="catalogue.pdf")
    worker = start_worker()
    before = peak_rss_mb(worker.proc.pid)
    post_media(client, message)
    stored = wait_until(
        lambda: (row := media_row(db, message["id"]))["status"] != "pending" and row, timeout=120, what="the download"
    )
    assert (stored["status"], stored["byte_size"]) == ("stored", len(document)), stored["last_error"]
    peak = peak_rss_mb(worker.proc.pid)
    print(f"worker peak RSS {before:.0f} MiB before, {peak:.0f} MiB after storing a 100 MiB document")
    assert peak - before < 40, (before, peak)  # 1 MiB chunks: a few MiB in flight, never the file
    digest = db.execute(
        "SELECT sha256(string_agg(data, ''::bytea ORDER BY seq)) AS digest FROM media_chunks WHERE media_id = %s",
        (stored["id"],),
    ).fetchone()["digest"]
    assert bytes(digest) == hashlib.sha256(document).digest()


def test_the_token_goes_to_metas_media_hosts_over_https_only(settings: Settings) -> None:
    graph = GraphClient(settings.model_copy(update={"media_hosts": ("lookaside.fbsbx.com",)}))
    for url in (
        "http://lookaside.fbsbx.com/file?mid=1",
        "https://evil.example/file",
        "https://lookaside.fbsbx.com.evil/x",
    ):
        with pytest.raises(OffHost):
            graph.stream_file(url)  # refused before any connection is made


def test_a_media_id_that_is_not_an_id_is_never_looked_up() -> None:
    def message(media_id: object) -> InboundMessage:
        part = {"id": media_id, "mime_type": "image/png"}
        return InboundMessage(
            "1", "1", None, None, None, None, "wamid.x", "image", None, dt.datetime.now(dt.UTC), {"image": part}
        )

    assert media_of(message("1234567890")) is not None
    for bad in ("../me/accounts", "1?fields=x", "", 12345, "1" * 300):
        assert media_of(message(bad)) is None


def test_a_voice_note_gets_the_configured_answer_once_and_an_operator_is_told(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    settings: Settings,
) -> None:
    fake_graph.add_media("voice-note", b"OggS" + bytes(200), "audio/ogg")
    message = payloads.media_message("audio", "voice-note", mime_type="audio/ogg; codecs=opus", voice=True)
    post_media(client, message)
    post_media(client, message)  # Meta redelivers
    start_worker()
    sent = wait_until(lambda: fake_graph.accepted(), what="the answer")
    assert [r.body["text"]["body"] for r in sent] == [settings.media_unreadable_reply]
    job = wait_until(lambda: db.execute("SELECT * FROM outbound_jobs WHERE status = 'done'").fetchone())
    assert job["skip_reason"] is None
    notice = db.execute("SELECT * FROM notifications WHERE kind = 'operator_needed'").fetchone()
    assert notice is not None and "audio" in notice["body"]
    assert settled_media(db, message["id"])["status"] == "stored"  # the file is kept for the operator
    assert len(fake_graph.accepted()) == 1


def test_without_an_unreadable_answer_a_photo_waits_for_an_operator(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any]
) -> None:
    fake_graph.add_media("photo-plain", PNG, "image/png")
    message = payloads.media_message("image", "photo-plain", mime_type="image/png")
    post_media(client, message)
    start_worker(WAYPOST_MEDIA_UNREADABLE_REPLY="")
    job = wait_until(lambda: db.execute("SELECT * FROM outbound_jobs WHERE status = 'skipped'").fetchone())
    assert "cannot read" in job["skip_reason"]
    notice = db.execute("SELECT * FROM notifications WHERE kind = 'operator_needed'").fetchone()
    assert notice is not None and "image" in notice["body"]
    settled_media(db, message["id"])
    assert fake_graph.accepted() == []
