"""Exporting and erasing a contact: everything stored about them, found by either identifier, across
merged conversations; erase leaves no row anywhere that names them, and an audit row that does not."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import psycopg
from moto.server import ThreadedMotoServer
from psycopg import sql

from tests.conftest import post_webhook, run_waypost, settled, wait_until
from tests.inbox_client import Inbox, create_operator
from tests.test_media import JPEG, b64_sha256, media_row
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings

PHONE, BSUID, NAME = "919810218674", "IN.1410018717833190", "Priya <b>Kapoor</b>"
OTHER, OTHER_NAME = "447700900123", "Olivia"


def message(text: str, *, phone: str | None = PHONE, bsuid: str | None = BSUID) -> dict[str, Any]:
    item: dict[str, Any] = {"id": payloads.new_wamid(), "timestamp": str(int(time.time())), "type": "text"}
    item["text"] = {"body": text}
    if phone:
        item["from"] = phone
    if bsuid:
        item["from_user_id"] = bsuid
    return item


def contact(phone: str | None = PHONE, bsuid: str | None = BSUID, name: str = NAME) -> dict[str, Any]:
    entry: dict[str, Any] = {"profile": {"name": name}}
    if phone:
        entry["wa_id"] = phone
    if bsuid:
        entry["user_id"] = bsuid
    return entry


def post(client: httpx.Client, payload: dict[str, Any]) -> None:
    answer = post_webhook(client, payloads.dumps(payload))
    assert answer.status_code == 200, answer.text


def mentions(db: psycopg.Connection, needles: tuple[str, ...]) -> list[str]:
    """Every (table, needle) where a row of any table of the public schema (procrastinate's included)
    names a needle: the row as text, and each bytea column (the journal's raw bodies) as bytes."""
    found = []
    tables = db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    ).fetchall()
    for (table,) in (tuple(row.values()) for row in tables):
        byteas = [
            row["column_name"]
            for row in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
                " AND table_name = %s AND data_type = 'bytea'",
                (table,),
            ).fetchall()
        ]
        for needle in needles:
            tests = [sql.SQL("strpos(t::text, %(text)s) > 0")]
            tests += [
                sql.SQL("position(%(bytes)s IN coalesce({}, ''::bytea)) > 0").format(sql.Identifier(c)) for c in byteas
            ]
            query = sql.SQL("SELECT count(*) AS n FROM {} t WHERE {}").format(
                sql.Identifier(table), sql.SQL(" OR ").join(tests)
            )
            if db.execute(query, {"text": needle, "bytes": needle.encode()}).fetchone()["n"]:  # type: ignore[index]
                found.append(f"{table}: {needle}")
    return found


def seed(client: httpx.Client, db: psycopg.Connection, fake_graph: FakeGraph) -> dict[str, Any]:
    """The contact writes by phone number alone, then by BSUID alone (two conversations), then with
    both (merged); sends a picture, edits a message; their reply gets statuses; another contact
    shares a webhook POST with them."""
    first = message("hello, it's Priya", bsuid=None)
    post(client, payloads.inbound(first, contacts=[contact(bsuid=None)]))
    post(client, payloads.inbound(message("me again", phone=None), contacts=[contact(phone=None)]))
    post(client, payloads.inbound(message("both now"), contacts=[contact()]))
    post(client, payloads.inbound(message("STOP"), contacts=[contact()]))  # a consent event names them too
    fake_graph.add_media("media-priya", JPEG, "image/jpeg")
    picture = payloads.media_message(
        "image", "media-priya", mime_type="image/jpeg", sha256=b64_sha256(JPEG), wa_id=PHONE
    )
    picture["from_user_id"] = BSUID
    post(client, payloads.inbound(picture, contacts=[contact()]))
    post(
        client,
        payloads.inbound(payloads.edit_message(first["id"], "hello, it is Priya", wa_id=PHONE), contacts=[contact()]),
    )
    # one POST, two contacts
    shared = payloads.envelope(
        [
            payloads.change(messages=[message("one more")], contacts=[contact()]),
            payloads.change(
                messages=[message("hi from Olivia", phone=OTHER, bsuid=None)],
                contacts=[contact(OTHER, None, OTHER_NAME)],
            ),
        ]
    )
    post(client, shared)
    wait_until(lambda: media_row(db, picture["id"])["status"] == "stored", what="the picture")
    settled(db)
    replies = db.execute(
        "SELECT m.wa_message_id FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE m.direction = 'outbound' AND m.wa_message_id IS NOT NULL AND c.wa_id = %s",
        (PHONE,),
    ).fetchall()
    assert replies
    for reply in replies:
        post(client, payloads.statuses(payloads.status(reply["wa_message_id"], "delivered", recipient_id=PHONE)))
    # a status for a message Waypost never recorded, naming the contact
    post(client, payloads.statuses(payloads.status(payloads.new_wamid(), "read", recipient_id=PHONE)))
    return {"picture": picture}


def test_erase_leaves_no_row_naming_the_contact_and_keeps_the_other_contact(
    client: httpx.Client,
    db: psycopg.Connection,
    fake_graph: FakeGraph,
    start_worker: Callable[..., Any],
    settings: Settings,
) -> None:
    start_worker()
    seed(client, db, fake_graph)
    needles = (PHONE, BSUID, NAME)
    assert {m.split(": ")[0] for m in mentions(db, needles)} >= {
        "conversations",
        "messages",
        "message_statuses",
        "webhook_events",
        "consent_events",
    }
    assert (
        len(db.execute("SELECT 1 FROM conversations WHERE wa_id = %s OR user_id = %s", (PHONE, BSUID)).fetchall()) >= 2
    )

    exported = run_waypost(settings, "contact", "export", BSUID)  # found by the BSUID as well as the number
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert set(data["identifiers"]) == {PHONE, BSUID}
    assert len(data["conversations"]) >= 2
    bodies = {m["body"] for m in data["messages"]}
    assert {"hello, it is Priya", "me again", "both now", "one more"} <= bodies
    assert [m["mime_type"] for m in data["media"]] == ["image/jpeg"]
    assert data["statuses"] and data["message_changes"][0]["body_after"] == "hello, it is Priya"
    page = run_waypost(settings, "contact", "export", PHONE, "--html")
    assert page.returncode == 0, page.stderr
    assert "Priya &lt;b&gt;Kapoor&lt;/b&gt;" in page.stdout and "<b>Kapoor" not in page.stdout
    assert "<img" not in page.stdout

    other_before = db.execute(
        "SELECT count(*) AS n FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.wa_id = %s",
        (OTHER,),
    ).fetchone()
    erased = run_waypost(settings, "contact", "erase", PHONE, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert "Erased (erasure" in erased.stdout and PHONE not in erased.stdout

    assert mentions(db, needles) == []
    audit = db.execute("SELECT * FROM erasures").fetchall()
    assert len(audit) == 1 and audit[0]["erased_by"] == "cli"
    counts = audit[0]["counts"]
    assert counts["conversations"] >= 2 and counts["messages"] >= 6 and counts["media"] == 1
    assert counts["media_chunks"] >= 2 and counts["webhook_events"] >= 6 and counts["message_statuses"] >= 2
    assert counts["message_changes"] == 1 and counts["outbound_jobs"] >= 1
    # the other contact keeps their conversation and messages (not the shared POST's raw copy)
    other_after = db.execute(
        "SELECT count(*) AS n FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.wa_id = %s",
        (OTHER,),
    ).fetchone()
    assert other_after == other_before and other_before["n"] >= 1  # type: ignore[index]
    assert mentions(db, (OTHER, OTHER_NAME))

    again = run_waypost(settings, "contact", "erase", PHONE, "--yes")
    assert again.returncode == 1 and "contact not found" in again.stderr
    assert len(db.execute("SELECT * FROM erasures").fetchall()) == 1


def test_erase_without_yes_asks_and_a_wrong_answer_erases_nothing(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    post(client, payloads.inbound(message("hello", bsuid=None), contacts=[contact(bsuid=None)]))
    refused = run_waypost(settings, "contact", "erase", PHONE, stdin="no\n")
    assert refused.returncode == 1 and "Not erased" in refused.stderr
    assert db.execute("SELECT 1 FROM conversations WHERE wa_id = %s", (PHONE,)).fetchone()
    confirmed = run_waypost(settings, "contact", "erase", PHONE, stdin="erase\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert mentions(db, (PHONE, NAME)) == []


def test_the_inbox_exports_and_erases_a_contact_only_when_confirmed(
    client: httpx.Client, db: psycopg.Connection, database_url: str
) -> None:
    post(client, payloads.inbound(message("hello <script>alert(1)</script>"), contacts=[contact()]))
    post(client, payloads.inbound(message("hi", phone=OTHER, bsuid=None), contacts=[contact(OTHER, None, OTHER_NAME)]))
    create_operator(database_url)
    inbox = Inbox(client)
    mine, other = (
        db.execute("SELECT id FROM conversations WHERE wa_id = %s", (wa_id,)).fetchone()["id"]  # type: ignore[index]
        for wa_id in (PHONE, OTHER)
    )
    page = client.get(f"/inbox/conversations/{mine}").text
    assert f"/inbox/conversations/{mine}/erase" in page and f"/api/inbox/conversations/{mine}/export" in page

    exported = inbox.get(f"/api/inbox/conversations/{mine}/export")
    assert exported.status_code == 200 and set(exported.json()["identifiers"]) == {PHONE, BSUID}
    assert exported.json()["messages"][0]["body"] == "hello <script>alert(1)</script>"
    download = client.get(f"/inbox/conversations/{mine}/export.html")
    assert download.status_code == 200 and download.headers["content-disposition"].startswith("attachment")
    assert "script-src 'self'" in download.headers["content-security-policy"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in download.text and "<script>" not in download.text

    # the JSON API: refused without the confirmation or the CSRF token
    assert inbox.post(f"/api/inbox/conversations/{mine}/erase", {}).status_code == 422
    assert inbox.post(f"/api/inbox/conversations/{mine}/erase", {"confirm": "erase"}, csrf=None).status_code == 403
    # the page: a form that asks; a wrong answer or a missing token erases nothing
    confirm_page = client.get(f"/inbox/conversations/{mine}/erase")
    assert confirm_page.status_code == 200 and 'name="confirm"' in confirm_page.text
    action = f"/inbox/conversations/{mine}/erase"
    assert client.post(action, data={"confirm": "yes", "csrf_token": inbox.csrf}).status_code == 400
    assert client.post(action, data={"confirm": "erase"}).status_code == 403
    assert mentions(db, (PHONE, BSUID)) != []
    done = client.post(action, data={"confirm": "erase", "csrf_token": inbox.csrf})
    assert done.status_code == 200 and "Contact erased" in done.text, done.text
    assert mentions(db, (PHONE, BSUID, NAME)) == []
    assert client.get(f"/inbox/conversations/{mine}").status_code == 404

    erased = inbox.post(f"/api/inbox/conversations/{other}/erase", {"confirm": "erase"})
    assert erased.status_code == 200 and erased.json()["counts"]["messages"] == 1
    assert mentions(db, (OTHER, OTHER_NAME)) == []
    audit = db.execute("SELECT erased_by, counts FROM erasures ORDER BY id").fetchall()
    assert [row["erased_by"] for row in audit] == ["op@example.com", "op@example.com"]
    assert inbox.post(f"/api/inbox/conversations/{other}/erase", {"confirm": "erase"}).status_code == 404


def system_message(kind: str, **system: str) -> dict[str, Any]:
    item = {"id": payloads.new_wamid(), "timestamp": str(int(time.time())), "type": "system"}
    return {**item, "system": {"body": "Priya changed something", "type": kind, **system}}


def test_erase_by_the_newest_identifier_finds_the_numbers_and_bsuids_the_contact_had_before(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    new_phone, new_bsuid, rotated = "919999999999", "IN.NEWBSUID", "IN.ROTATED"
    post(client, payloads.inbound(message("before"), contacts=[contact()]))
    change = system_message("user_changed_number", wa_id=new_phone, user_id=new_bsuid, previous_user_id=BSUID)
    post(client, payloads.inbound({**change, "from": PHONE}, contacts=[]))
    post(client, payloads.inbound(message("after", phone=None, bsuid=new_bsuid), contacts=[contact(None, new_bsuid)]))
    rotation = system_message("user_changed_user_id", previous_user_id=new_bsuid, user_id=rotated)
    post(client, payloads.inbound(rotation, contacts=[]))
    post(client, payloads.inbound(message("rotated", phone=None, bsuid=rotated), contacts=[contact(None, rotated)]))
    assert db.execute("SELECT user_id FROM conversations").fetchall() == [{"user_id": rotated}]

    exported = run_waypost(settings, "contact", "export", rotated)
    assert exported.returncode == 0, exported.stderr
    assert set(json.loads(exported.stdout)["identifiers"]) == {PHONE, BSUID, new_phone, new_bsuid, rotated}
    erased = run_waypost(settings, "contact", "erase", rotated, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert mentions(db, (PHONE, BSUID, new_phone, new_bsuid, rotated, NAME)) == []


def test_a_file_in_s3_is_deleted_with_the_contact_and_nothing_is_erased_while_it_cannot_be(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        httpx.post(f"{url}/moto-api/reset")
        s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="key-id", aws_secret_access_key="secret"
        )
        s3.create_bucket(Bucket="files")
        picture = payloads.media_message("image", "media-priya", mime_type="image/jpeg", wa_id=PHONE)
        post(client, payloads.inbound(picture, contacts=[contact(bsuid=None)]))
        media_id = media_row(db, picture["id"])["id"]
        s3.put_object(Bucket="files", Key=f"waypost/{media_id}", Body=JPEG)
        db.execute(
            "UPDATE media SET status = 'stored', stored_at = now(), storage = 's3', object_bucket = 'files',"
            " object_key = %s WHERE id = %s",
            (f"waypost/{media_id}", media_id),
        )

        # the settings name no S3 store: the object cannot be deleted, so nothing is
        refused = run_waypost(settings, "contact", "erase", PHONE, "--yes")
        assert refused.returncode == 1 and "S3" in refused.stderr
        assert media_row(db, picture["id"])["status"] == "stored"
        assert db.execute("SELECT count(*) AS n FROM erasures").fetchone() == {"n": 0}

        values = {name: getattr(settings, name) for name in Settings.model_fields}
        values.update(
            media_store_url="s3://files/waypost",
            s3_endpoint_url=url,
            s3_access_key_id="key-id",
            s3_secret_access_key="secret",
        )
        erased = run_waypost(Settings(**values), "contact", "erase", PHONE, "--yes")
        assert erased.returncode == 0, erased.stderr
        assert s3.list_objects_v2(Bucket="files").get("Contents", []) == []
        assert mentions(db, (PHONE, NAME)) == []
    finally:
        server.stop()


def test_erase_waits_for_a_send_in_flight_to_the_contact(
    client: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    post(client, payloads.inbound(message("hello", bsuid=None), contacts=[contact(bsuid=None)]))
    conversation = db.execute("SELECT id FROM conversations").fetchone()["id"]  # type: ignore[index]
    job = db.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status)"
        " VALUES ('replies', 'send_reply', %s, '{}', 'doing') RETURNING id",
        (f"conversation:{conversation}",),
    ).fetchone()["id"]  # type: ignore[index]
    refused = run_waypost(settings, "contact", "erase", PHONE, "--yes")
    assert refused.returncode == 1 and "being sent: try again" in refused.stderr
    assert db.execute("SELECT count(*) AS n FROM messages").fetchone() == {"n": 1}
    db.execute("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = %s", (job,))
    erased = run_waypost(settings, "contact", "erase", PHONE, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert mentions(db, (PHONE, NAME)) == []
