"""Media bytes in an S3-compatible object store (WAYPOST_MEDIA_STORE_URL=s3://bucket/prefix), against
a real S3-protocol server on 127.0.0.1 (moto's, in a thread of the test process): the worker writes
objects (one PutObject, or a multipart upload completed only after the checks), the inbox streams
them back, the sweep deletes them, a failed attempt leaves no object and no stray upload."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from moto.server import ThreadedMotoServer
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tests.conftest import CRON_SECRET, run_waypost, wait_until
from tests.files import PDF
from tests.inbox_client import Inbox, create_operator
from tests.test_media import JPEG, PNG, b64_sha256, media_row, peak_rss_mb, post_media, settled_media, stored_bytes
from tests.test_outbound_media import send_file, setup_conversation
from waypost.attachments import stage_file
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.media_store import MediaStore
from waypost.s3 import PART_BYTES
from waypost.settings import ConfigurationError, Settings

BUCKET = "waypost-media"
KEY_ID, SECRET = "test-s3-key-id", "test-s3-secret-access-key"


@pytest.fixture
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    httpx.post(f"{url}/moto-api/reset")  # moto's state lives in this process: start each test empty
    yield url
    server.stop()


@pytest.fixture
def s3(s3_url: str) -> Any:
    """A client of our own, to look into the bucket as the worker left it."""
    client = boto3.client(
        "s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def settings(settings: Settings, s3_url: str) -> Settings:
    """The suite's settings, with files going to the S3 server (the web app and workers read these)."""
    values = {name: getattr(settings, name) for name in Settings.model_fields}
    values.update(
        media_store_url=f"s3://{BUCKET}/files",
        s3_endpoint_url=s3_url,
        s3_access_key_id=KEY_ID,
        s3_secret_access_key=SECRET,
    )
    return Settings(**values)


def objects(s3: Any) -> dict[str, int]:
    return {item["Key"]: item["Size"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def open_uploads(s3: Any) -> list[Any]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def object_bytes(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_an_image_lands_in_the_bucket_and_the_inbox_serves_it(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    database_url: str,
    s3: Any,
) -> None:
    fake_graph.add_media("media-image", JPEG, "image/jpeg")
    message = payloads.media_message("image", "media-image", mime_type="image/jpeg", sha256=b64_sha256(JPEG))
    post_media(client, message)
    start_worker()
    stored = settled_media(db, message["id"])
    key = f"files/{stored['id']}"
    assert (stored["status"], stored["storage"], stored["object_bucket"], stored["object_key"]) == (
        "stored",
        "s3",
        BUCKET,
        key,
    )
    assert stored_bytes(db, stored["id"]) == b""  # nothing in PostgreSQL but the row
    assert objects(s3) == {key: len(JPEG)} and object_bytes(s3, key) == JPEG
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert "-" not in head["ETag"]  # under a part: one PutObject
    # never rendered by the bucket itself, should it be public by mistake
    assert (head["ContentType"], head["ContentDisposition"]) == ("application/octet-stream", "attachment")

    create_operator(database_url)
    served = Inbox(client).get(f"/inbox/media/{stored['id']}")
    assert served.status_code == 200 and served.content == JPEG
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["content-length"] == str(len(JPEG))
    assert served.headers["content-disposition"].startswith("inline")
    assert served.headers["x-content-type-options"] == "nosniff"


def test_a_file_stored_in_postgresql_before_the_switch_is_still_served(
    client: httpx.Client, db: psycopg.Connection, database_url: str, s3: Any
) -> None:
    message = payloads.media_message("image", "media-before", mime_type="image/png")
    post_media(client, message)
    media_id = media_row(db, message["id"])["id"]
    db.execute("INSERT INTO media_chunks (media_id, seq, data) VALUES (%s, 0, %s)", (media_id, PNG))
    db.execute(
        "UPDATE media SET status = 'stored', byte_size = %s, stored_at = now() WHERE id = %s", (len(PNG), media_id)
    )
    assert media_row(db, message["id"])["storage"] == "postgres"  # what every row written before 0014 says
    create_operator(database_url)
    served = Inbox(client).get(f"/inbox/media/{media_id}")
    assert served.status_code == 200 and served.content == PNG
    assert objects(s3) == {}


def test_a_file_larger_than_a_part_goes_up_as_a_multipart_upload(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    database_url: str,
    s3: Any,
) -> None:
    document = os.urandom(2 * PART_BYTES + 12345)  # two whole parts and a last, short one
    fake_graph.add_media("media-doc", document, "application/pdf")
    message = payloads.media_message("document", "media-doc", mime_type="application/pdf", filename="big.pdf")
    post_media(client, message)
    start_worker()
    stored = settled_media(db, message["id"])
    assert (stored["status"], stored["byte_size"]) == ("stored", len(document)), stored["last_error"]
    key = stored["object_key"]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ETag"].endswith('-3"')  # S3 writes a multipart ETag so
    assert hashlib.sha256(object_bytes(s3, key)).digest() == hashlib.sha256(document).digest()
    assert open_uploads(s3) == []
    create_operator(database_url)
    served = Inbox(client).get(f"/inbox/media/{stored['id']}")
    assert served.headers["content-disposition"].startswith('attachment; filename="big.pdf"')
    assert hashlib.sha256(served.content).digest() == hashlib.sha256(document).digest()


def test_a_bad_file_in_several_parts_leaves_no_object_and_no_open_upload(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any], s3: Any
) -> None:
    document = os.urandom(PART_BYTES + 1000)
    fake_graph.add_media("media-corrupt", document, "application/pdf", sha256="0" * 64)
    message = payloads.media_message("document", "media-corrupt", mime_type="application/pdf")
    post_media(client, message)
    start_worker(WAYPOST_MEDIA_MAX_ATTEMPTS="2")
    failed = settled_media(db, message["id"])
    assert (failed["status"], failed["attempts"], failed["object_key"]) == ("failed", 2, None)
    assert "SHA-256" in failed["last_error"]
    assert objects(s3) == {} and open_uploads(s3) == []  # each attempt's uploaded part was aborted


def test_an_upload_cut_off_midway_is_aborted_and_the_retry_stores_the_file(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any], s3: Any
) -> None:
    document = os.urandom(2 * PART_BYTES)
    # the first download stalls after a part and a half: one part is in the bucket's upload by then
    media = fake_graph.add_media(
        "media-stall", document, "application/pdf", hang_downloads=1, hang_after_bytes=PART_BYTES * 3 // 2
    )
    message = payloads.media_message("document", "media-stall", mime_type="application/pdf")
    post_media(client, message)
    start_worker()
    try:
        stored = settled_media(db, message["id"])
    finally:
        media.release.set()
    assert (stored["status"], stored["attempts"]) == ("stored", 2), stored["last_error"]
    assert objects(s3) == {stored["object_key"]: len(document)}
    assert object_bytes(s3, stored["object_key"]) == document
    assert open_uploads(s3) == []


def test_an_upload_the_store_refuses_is_retried(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any], s3: Any
) -> None:
    s3.delete_bucket(Bucket=BUCKET)  # the store answers NoSuchBucket until the bucket is back
    fake_graph.add_media("media-wait", PNG, "image/png")
    message = payloads.media_message("image", "media-wait", mime_type="image/png")
    post_media(client, message)
    start_worker(WAYPOST_MEDIA_MAX_ATTEMPTS="20")
    wait_until(lambda: "NoSuchBucket" in (media_row(db, message["id"])["last_error"] or ""), what="a refused upload")
    s3.create_bucket(Bucket=BUCKET)
    stored = settled_media(db, message["id"])
    assert stored["status"] == "stored" and stored["attempts"] >= 2
    assert object_bytes(s3, stored["object_key"]) == PNG


def test_the_sweep_deletes_old_objects_even_one_already_gone(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any], s3: Any
) -> None:
    messages = [payloads.media_message("image", f"media-{n}", mime_type="image/png") for n in ("old", "gone", "new")]
    for message in messages:
        fake_graph.add_media(message["image"]["id"], PNG, "image/png")
        post_media(client, message)
    worker = start_worker()
    old, gone, new = (settled_media(db, message["id"]) for message in messages)
    assert len(objects(s3)) == 3
    worker.stop()  # its own periodic sweep would race the one below for the old files
    s3.delete_object(Bucket=BUCKET, Key=gone["object_key"])  # deleted by someone else already
    db.execute(
        "UPDATE media SET stored_at = now() - interval '1 day' * %s - interval '1 hour' WHERE id = ANY(%s)",
        (Settings().media_retention_days, [old["id"], gone["id"]]),
    )
    report = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"}).json()
    assert report["media_purged"] == 2
    assert [media_row(db, m["id"])["status"] for m in messages] == ["purged", "purged", "stored"]
    assert objects(s3) == {new["object_key"]: len(PNG)}


def test_a_100_mb_document_goes_to_s3_with_bounded_worker_memory(
    client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph, start_worker: Callable[..., Any], s3: Any
) -> None:
    document = os.urandom(100 * 1024 * 1024)
    fake_graph.add_media("media-big", document, "application/pdf")
    message = payloads.media_message("document", "media-big", mime_type="application/pdf", filename="catalogue.pdf")
    worker = start_worker()
    before = peak_rss_mb(worker.proc.pid)
    post_media(client, message)
    stored = wait_until(
        lambda: (row := media_row(db, message["id"]))["status"] != "pending" and row, timeout=180, what="the download"
    )
    assert (stored["status"], stored["byte_size"]) == ("stored", len(document)), stored["last_error"]
    peak = peak_rss_mb(worker.proc.pid)
    print(f"worker peak RSS {before:.0f} MiB before, {peak:.0f} MiB after storing a 100 MiB document in S3")
    assert peak - before < 40, (before, peak)  # 8 MiB parts: a part or two in memory, never the file
    assert hashlib.sha256(object_bytes(s3, stored["object_key"])).digest() == hashlib.sha256(document).digest()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"media_store_url": "http://bucket/x"}, "s3://bucket/prefix"),
        ({"media_store_url": "s3://Not_A_Bucket/x"}, "s3://bucket/prefix"),
        ({"media_store_url": "s3://media", "s3_access_key_id": "k"}, "or neither"),
        ({"media_store_url": "s3://media", "s3_endpoint_url": "http://127.0.0.1:9000"}, "for that endpoint too"),
        (
            {
                "media_store_url": "s3://media",
                "s3_endpoint_url": "ftp://x",
                "s3_access_key_id": "k",
                "s3_secret_access_key": "s",
            },
            "http(s) URL",
        ),
    ],
)
def test_a_media_store_that_cannot_work_stops_the_start(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**values).media_store()


def test_media_store_settings_are_read() -> None:
    assert Settings().media_store() is None
    assert Settings(media_store_url="postgres").media_store() is None
    assert Settings(media_store_url="s3://media").media_store() == ("media", "")
    assert Settings(media_store_url="s3://media/a/b/").media_store() == ("media", "a/b/")
    assert Settings(s3_secret_access_key="  ").s3_secret_access_key is None  # an empty secret is unset
    assert SECRET in Settings(s3_secret_access_key=SECRET).secret_values()  # redacted from the logs


def test_status_says_where_media_files_go(settings: Settings) -> None:
    report = json.loads(run_waypost(settings, "status", "--json").stdout)
    assert report["media_store"] == f"S3 bucket '{BUCKET}', prefix 'files/', at {settings.s3_endpoint_url}"
    broken = run_waypost(settings, "status", WAYPOST_MEDIA_STORE_URL="s3://x")
    assert broken.returncode == 1 and "media store not usable: WAYPOST_MEDIA_STORE_URL must be" in broken.stdout


def test_an_operators_file_goes_to_the_bucket_before_its_message_is_queued_and_is_sent_from_there(
    client: httpx.Client,
    db: psycopg.Connection,
    database_url: str,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    s3: Any,
) -> None:
    inbox, cid, _ = setup_conversation(client, db, database_url)
    sent = send_file(inbox, cid, PDF, "application/pdf", "Prices.pdf", client_key="prices-0001")
    assert sent.status_code == 202, sent.text
    again = send_file(inbox, cid, PDF, "application/pdf", "Prices.pdf", client_key="prices-0001")
    assert again.json()["duplicate"] is True
    media = db.execute("SELECT * FROM media WHERE message_id = %s", [sent.json()["message"]["id"]]).fetchone()
    assert (media["storage"], media["status"], media["byte_size"]) == ("s3", "stored", len(PDF))
    assert media["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert objects(s3) == {media["object_key"]: len(PDF)}  # once: the resubmitted form wrote nothing
    assert db.execute("SELECT count(*) AS n FROM media_chunks").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM media WHERE message_id IS NULL").fetchone()["n"] == 0

    start_worker()
    wait_until(lambda: fake_graph.accepted_uploads(), what="the upload to Meta")
    (upload,) = fake_graph.accepted_uploads()
    assert upload.sha256 == hashlib.sha256(PDF).hexdigest()

    # a file whose message is refused (the window closed) leaves no row and no object behind
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '2 days'")
    refused = send_file(inbox, cid, PDF, "application/pdf", "Late.pdf")
    assert (refused.status_code, refused.json()["code"]) == (409, "WINDOW_CLOSED")
    assert db.execute("SELECT count(*) AS n FROM media").fetchone()["n"] == 1
    assert list(objects(s3)) == [media["object_key"]]


def test_the_sweep_removes_a_staged_file_no_message_took(
    client: httpx.Client, db: psycopg.Connection, settings: Settings, s3: Any
) -> None:
    store = MediaStore(settings)

    async def chunks() -> AsyncIterator[bytes]:
        yield PDF

    async def stage() -> int:
        pool = AsyncConnectionPool(settings.require_database_url(), open=False, kwargs={"row_factory": dict_row})
        async with pool:
            file = {"kind": "document", "mime_type": "application/pdf", "filename": "x.pdf"}
            return await stage_file(pool, store, **file, chunks=chunks())

    media_id = asyncio.run(stage())  # as a web process that died before it queued the message
    row = db.execute("SELECT * FROM media WHERE id = %s", [media_id]).fetchone()
    assert row["message_id"] is None and objects(s3) == {row["object_key"]: len(PDF)}
    report = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"}).json()
    assert report["staged_media_removed"] == 0  # still young: an upload on its way to its message
    db.execute("UPDATE media SET created_at = now() - interval '2 hours' WHERE id = %s", [media_id])
    report = client.post("/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"}).json()
    assert report["staged_media_removed"] == 1
    assert db.execute("SELECT count(*) AS n FROM media").fetchone()["n"] == 0 and objects(s3) == {}
