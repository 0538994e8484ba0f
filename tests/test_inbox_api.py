"""The inbox's JSON API and pages over real HTTP: auth on every action, then each action's effect."""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import psycopg
import pytest

from tests.conftest import ServerThread, WebServer, post_webhook, run_waypost, settled, wait_for, wait_until
from tests.inbox_client import PASSWORD, Inbox, conversation_id, create_operator, sign_in
from waypost.devtools import payloads
from waypost.settings import Settings
from webhook.app import create_app

API_GETS = ["/api/inbox/conversations", "/api/inbox/conversations/1", "/api/inbox/notifications"]
API_POSTS = [
    ("/api/inbox/conversations/1/messages", {"body": "hi"}),
    ("/api/inbox/conversations/1/ai", {"enabled": False}),
    ("/api/inbox/conversations/1/read", {}),
    ("/api/inbox/conversations/1/delete", {}),
    ("/api/inbox/conversations/1/restore", {}),
    ("/api/inbox/notifications/1/read", {}),
    ("/api/inbox/notifications/1/snooze", {"until": None}),
]
PAGES = [
    "/inbox",
    "/inbox/conversations/1",
    "/inbox/notifications",
    "/inbox/fragments/conversations",
    "/inbox/fragments/conversations/1",
    "/inbox/fragments/notifications",
    "/inbox/fragments/badge",
    "/inbox/events",
]


@pytest.fixture
def inbox(client: httpx.Client, database_url: str) -> Inbox:
    create_operator(database_url)
    return Inbox(client)


def inbound(client: httpx.Client, body: str, *, wa_id: str = "16505551234", name: str = "Sheena Nelson") -> str:
    message = payloads.text_message(body, wa_id=wa_id)
    contacts = [{"profile": {"name": name}, "wa_id": wa_id}]
    answer = post_webhook(client, payloads.dumps(payloads.inbound(message, contacts=contacts)))
    assert answer.status_code == 200, answer.text
    return str(message["id"])


def test_nothing_is_reachable_without_a_session(client: httpx.Client) -> None:
    for path in API_GETS:
        answer = client.get(path)
        assert (answer.status_code, answer.json()["code"]) == (401, "UNAUTHENTICATED"), path
    for path, body in API_POSTS:
        assert client.post(path, json=body).status_code == 401, path
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/inbox/login?next={path}"
    assert client.post("/inbox/logout").status_code == 303


def test_every_action_needs_the_sessions_csrf_token(inbox: Inbox) -> None:
    for path, body in API_POSTS:
        for token in (None, "wrong-token"):
            answer = inbox.post(path, body, csrf=token)
            assert (answer.status_code, answer.json()["code"]) == (403, "CSRF"), (path, token)
    # sign-out is a form: its token travels as a field
    assert inbox.client.post("/inbox/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert inbox.client.post("/inbox/logout", data={"csrf_token": inbox.csrf}).status_code == 303
    assert inbox.get("/api/inbox/conversations").status_code == 401


def test_sign_in_needs_the_form_token_and_the_right_password(client: httpx.Client, database_url: str) -> None:
    create_operator(database_url)
    no_token = client.post("/inbox/login", data={"email": "op@example.com", "password": PASSWORD})
    assert no_token.status_code == 403
    wrong = sign_in(client, password="not the password")
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    unknown = sign_in(client, email="nobody@example.com")
    assert unknown.status_code == 401 and "Wrong email or password" in unknown.text
    right = sign_in(client, email="OP@example.com")
    assert right.status_code == 303 and right.headers["location"] == "/inbox"
    cookie = right.headers["set-cookie"].lower()
    assert "waypost_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http
    assert client.get("/api/inbox/conversations").status_code == 200


def test_failed_sign_ins_are_rate_limited(client: httpx.Client, database_url: str, settings: Settings) -> None:
    create_operator(database_url)
    for _ in range(settings.sign_in_max_failures):
        assert sign_in(client, password="guess").status_code == 401
    refused = sign_in(client)  # even the right password, until the window passes
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= settings.sign_in_window_seconds
    assert "Too many failed sign-ins" in refused.text


def test_session_cookie_is_secure_over_https(settings: Settings) -> None:
    """Behind a TLS proxy named in WAYPOST_TRUSTED_PROXIES, the request is https: cookie Secure, and
    HSTS. The same header from a peer nobody named changes nothing."""
    for trusted, secure in ((("127.0.0.1",), True), ((), False), (("10.9.9.9",), False)):
        app = create_app(settings.model_copy(update={"trusted_proxies": trusted}))
        with ServerThread(app, proxy_headers=False) as server:
            # the login form starts the session (it holds the form's CSRF token)
            answer = httpx.get(server.url + "/inbox/login", headers={"X-Forwarded-Proto": "https"})
            assert answer.status_code == 200
            assert ("secure" in answer.headers["set-cookie"].lower()) is secure, trusted
            assert ("strict-transport-security" in answer.headers) is secure, trusted


def test_inbox_is_off_without_a_session_secret(settings: Settings) -> None:
    with ServerThread(create_app(settings.model_copy(update={"session_secret": None}))) as server:
        for path in ("/inbox", "/inbox/login", "/api/inbox/conversations"):
            answer = httpx.get(server.url + path)
            assert (answer.status_code, answer.json()["code"]) == (503, "INBOX_DISABLED")


def test_conversation_list_badges_filters_and_search(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection
) -> None:
    inbound(client, "hello from Sheena")
    inbound(client, "hi, Ana here", wa_id="4915112345678", name="Ana Lima")
    inbound(client, "old one", wa_id="447700900123", name="Old Timer")
    sheena, ana, old = (conversation_id(db, w) for w in ("16505551234", "4915112345678", "447700900123"))
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '25 hours' WHERE id = %s", (old,))
    assert inbox.post(f"/api/inbox/conversations/{ana}/ai", {"enabled": False}).status_code == 200
    db.execute(
        "INSERT INTO messages (conversation_id, direction, author, idempotency_key, type, body, status, error) "
        "VALUES (%s, 'outbound', 'ai', 'test:failed', 'text', 'x', 'failed', %s)",
        (sheena, psycopg.types.json.Jsonb([{"code": 131026, "title": "Message undeliverable"}])),
    )

    listed = inbox.get("/api/inbox/conversations").json()["conversations"]
    assert listed[0]["id"] == sheena  # newest activity first
    by_id = {c["id"]: c for c in listed}
    assert by_id[ana]["badges"] == {"ai_paused": True, "send_failed": False, "window_closed": False}
    assert by_id[sheena]["badges"]["send_failed"] is True
    assert by_id[old]["badges"]["window_closed"] is True
    assert by_id[ana]["contact"] == {
        "label": "Ana Lima",
        "name": "Ana Lima",
        "wa_id": "4915112345678",
        "user_id": None,
        "username": None,
    }
    assert by_id[ana]["unread"] == 1 and by_id[ana]["last_message"]["body"] == "hi, Ana here"

    def ids(**params: str) -> set[int]:
        return {c["id"] for c in inbox.get("/api/inbox/conversations", **params).json()["conversations"]}

    assert ids(filter="ai_paused") == {ana}
    assert ids(filter="send_failed") == {sheena}
    assert ids(filter="window_closed") == {old}
    assert ids(filter="unread") == {sheena, ana, old}
    assert ids(q="ana") == {ana}
    assert ids(q="+44 7700") == {old}  # numbers match whatever the operator types around the digits
    assert inbox.get("/api/inbox/conversations", filter="bogus").status_code == 400
    # opening a conversation reads it
    page = inbox.client.get(f"/inbox/conversations/{ana}")
    assert page.status_code == 200 and "hi, Ana here" in page.text
    assert ids(filter="unread") == {sheena, old}
    # the list page shows the badges too
    html = inbox.client.get("/inbox").text
    assert 'data-badge="ai_paused"' in html and 'data-badge="window_closed"' in html


def test_conversation_shows_authors_send_times_and_statuses(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection
) -> None:
    sent_at = int(time.time()) - 120
    message = payloads.text_message("when do you open?", timestamp=sent_at)
    post_webhook(client, payloads.dumps(payloads.inbound(message)))
    cid = conversation_id(db)
    db.execute(
        "INSERT INTO messages (conversation_id, direction, author, idempotency_key, type, body, status, error) "
        "VALUES (%s, 'outbound', 'ai', 'test:1', 'text', 'at nine', 'failed', %s)",
        (
            cid,
            psycopg.types.json.Jsonb(
                [
                    {
                        "code": 131047,
                        "title": "Re-engagement message",
                        "message": "Re-engagement message",
                        "error_data": {"details": "More than 24 hours have passed"},
                    }
                ]
            ),
        ),
    )
    answer = inbox.get(f"/api/inbox/conversations/{cid}").json()
    first, second = answer["messages"]
    assert first["author"] == "contact" and first["direction"] == "inbound" and first["status"] == "received"
    assert dt.datetime.fromisoformat(first["contact_sent_at"]).timestamp() == sent_at
    assert second["author"] == "ai" and second["status"] == "failed"
    assert second["error"] == {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "details": "More than 24 hours have passed",
    }
    html = inbox.client.get(f"/inbox/conversations/{cid}").text
    assert "failed: 131047 Re-engagement message (More than 24 hours have passed)" in html
    assert inbox.get("/api/inbox/conversations/999999").status_code == 404


def test_the_live_feed_announces_a_reply_job_skipped_or_failed(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection, web: WebServer
) -> None:
    """A skipped or failed AI job changes no message row: its own trigger tells an open page, which
    would otherwise go on saying "AI is replying…". Pending to running looks the same: no event."""
    inbound(client, "is anyone there?")
    inbound(client, "hello?", wa_id="16505559999", name="Ana Lima")
    skipped, failed = conversation_id(db), conversation_id(db, "16505559999")
    page = httpx.Client(base_url=web.url, cookies=dict(inbox.client.cookies), timeout=30)
    with page, page.stream("GET", "/inbox/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: resync"
        for cid, status in ((skipped, "running"), (skipped, "skipped"), (failed, "failed")):
            db.execute("UPDATE outbound_jobs SET status = %s WHERE conversation_id = %s", (status, cid))
        db.execute("UPDATE conversations SET updated_at = now() WHERE id = %s", (failed,))  # the last event
        started, changes = time.monotonic(), []
        for line in lines:
            assert time.monotonic() - started < 20, f"no event for the conversation's update: {changes}"
            event = json.loads(line.removeprefix("data: ")) if line.startswith("data: ") else {}
            if event.get("type") == "change":
                changes.append(event)
                if event["table"] == "conversations":
                    break
    jobs = [change for change in changes if change["table"] == "outbound_jobs"]
    assert [(job["op"], job["conversation_id"]) for job in jobs] == [("update", skipped), ("update", failed)]
    page_html = inbox.client.get(f"/inbox/conversations/{skipped}").text
    assert 'data-live-on="conversations,messages,outbound_jobs"' in page_html


def test_operator_reply_is_sent_once_and_pauses_the_ai(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection, fake_graph, start_worker
) -> None:
    inbound(client, "I want a human")
    cid = conversation_id(db)
    start_worker()
    wait_for(db, "SELECT 1 FROM messages WHERE author = 'ai' AND status = 'sent'")
    answer = inbox.post(f"/api/inbox/conversations/{cid}/messages", {"body": "Hi, I am Sam", "client_key": "k" * 16})
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    assert queued["duplicate"] is False and queued["message"]["status"] == "sending"
    assert queued["message"]["author"] == "operator" and queued["message"]["operator"] == "op@example.com"
    again = inbox.post(f"/api/inbox/conversations/{cid}/messages", {"body": "Hi, I am Sam", "client_key": "k" * 16})
    assert again.status_code == 202 and again.json()["duplicate"] is True
    row = wait_for(db, "SELECT * FROM messages WHERE author = 'operator' AND status = 'sent'")
    assert row["wa_message_id"] and row["send_attempts"] == 1
    settled(db)
    sends = [r for r in fake_graph.accepted() if r.body.get("text", {}).get("body") == "Hi, I am Sam"]
    assert len(sends) == 1
    assert sends[0].body["biz_opaque_callback_data"] == row["idempotency_key"]
    assert "context" not in sends[0].body
    assert db.execute("SELECT ai_enabled FROM conversations WHERE id = %s", (cid,)).fetchone() == {"ai_enabled": False}
    # the next inbound message is left for the operator, who is told
    inbound(client, "are you still there?")
    job = wait_for(db, "SELECT * FROM outbound_jobs WHERE status = 'skipped'")
    assert job["skip_reason"] == "AI disabled for this conversation"
    assert wait_for(db, "SELECT kind FROM notifications WHERE kind = 'operator_needed'")
    assert inbox.post(f"/api/inbox/conversations/{cid}/ai", {"enabled": True}).status_code == 200
    assert inbox.post(f"/api/inbox/conversations/{cid}/messages", {"body": ""}).status_code == 422


def test_operator_reply_is_refused_outside_the_window(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection
) -> None:
    inbound(client, "hello")
    cid = conversation_id(db)
    db.execute("UPDATE conversations SET last_inbound_at = now() - interval '24 hours 1 minute' WHERE id = %s", (cid,))
    answer = inbox.post(f"/api/inbox/conversations/{cid}/messages", {"body": "too late"})
    assert (answer.status_code, answer.json()["code"]) == (409, "WINDOW_CLOSED")
    assert "24-hour" in answer.json()["error"]
    assert db.execute("SELECT count(*) AS n FROM messages WHERE author = 'operator'").fetchone() == {"n": 0}
    assert db.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'send_operator_message'"
    ).fetchone() == {"n": 0}


def test_delete_restore_and_the_unique_live_conversation(
    inbox: Inbox, client: httpx.Client, db: psycopg.Connection
) -> None:
    inbound(client, "first")
    first = conversation_id(db)
    assert inbox.post(f"/api/inbox/conversations/{first}/delete").status_code == 200
    assert inbox.post(f"/api/inbox/conversations/{first}/delete").status_code == 409
    assert inbox.get("/api/inbox/conversations").json()["conversations"] == []
    deleted = inbox.get("/api/inbox/conversations", deleted="1").json()["conversations"]
    assert [c["id"] for c in deleted] == [first] and deleted[0]["deleted_at"]
    assert inbox.post(f"/api/inbox/conversations/{first}/messages", {"body": "x"}).status_code == 404
    inbound(client, "second")  # the contact writes again: a new conversation
    second = conversation_id(db)
    assert second != first
    refused = inbox.post(f"/api/inbox/conversations/{first}/restore")
    assert (refused.status_code, refused.json()["code"]) == (409, "CONTACT_HAS_LIVE_CONVERSATION")
    assert inbox.post(f"/api/inbox/conversations/{second}/delete").status_code == 200
    assert inbox.post(f"/api/inbox/conversations/{first}/restore").status_code == 200
    assert [c["id"] for c in inbox.get("/api/inbox/conversations").json()["conversations"]] == [first]
    assert inbox.post("/api/inbox/conversations/999999/restore").status_code == 404


def test_notifications_read_and_snooze(inbox: Inbox, db: psycopg.Connection) -> None:
    for kind in ("send_failed", "ai_no_reply"):
        db.execute("INSERT INTO notifications (kind, body) VALUES (%s, %s)", (kind, f"{kind} happened"))
    listed = inbox.get("/api/inbox/notifications").json()
    assert listed["unread"] == 2 and [n["kind"] for n in listed["notifications"]] == ["ai_no_reply", "send_failed"]
    failed, no_reply = listed["notifications"][1]["id"], listed["notifications"][0]["id"]
    assert inbox.post(f"/api/inbox/notifications/{failed}/read").status_code == 200
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    assert inbox.post(f"/api/inbox/notifications/{no_reply}/snooze", {"until": until.isoformat()}).status_code == 200
    now = inbox.get("/api/inbox/notifications").json()
    assert (now["unread"], now["snoozed"], now["notifications"]) == (0, 1, [])
    assert now["next_wake"] is not None
    assert len(inbox.get("/api/inbox/notifications", include_snoozed="1").json()["notifications"]) == 1
    # it comes back by itself once the time passes
    back = wait_until(lambda: (n := inbox.get("/api/inbox/notifications").json())["unread"] and n, what="the wake")
    assert back["unread"] == 1 and back["notifications"][0]["id"] == no_reply
    assert dt.datetime.now(dt.UTC) >= until
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    assert inbox.post(f"/api/inbox/notifications/{no_reply}/snooze", {"until": past}).json()["code"] == "BAD_TIME"
    naive = dt.datetime.now().replace(microsecond=0).isoformat()
    assert inbox.post(f"/api/inbox/notifications/{no_reply}/snooze", {"until": naive}).status_code == 400
    assert inbox.post("/api/inbox/notifications/999999/read").status_code == 404


def test_openapi_describes_the_inbox_api(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "/api/inbox/conversations/{conversation_id}/messages" in paths
    assert set(paths["/api/inbox/conversations/{conversation_id}/messages"]) == {"post"}
    assert {path for path in paths if path.startswith("/api/inbox")} == {
        "/api/inbox/conversations",
        "/api/inbox/conversations/{conversation_id}",
        "/api/inbox/conversations/{conversation_id}/messages",
        "/api/inbox/conversations/{conversation_id}/files",
        "/api/inbox/conversations/{conversation_id}/messages/{message_id}/reaction",
        "/api/inbox/conversations/{conversation_id}/ai",
        "/api/inbox/conversations/{conversation_id}/read",
        "/api/inbox/conversations/{conversation_id}/delete",
        "/api/inbox/conversations/{conversation_id}/restore",
        "/api/inbox/conversations/{conversation_id}/block",
        "/api/inbox/conversations/{conversation_id}/unblock",
        "/api/inbox/notifications",
        "/api/inbox/notifications/{notification_id}/read",
        "/api/inbox/notifications/{notification_id}/snooze",
        "/api/inbox/conversations/{conversation_id}/export",
        "/api/inbox/conversations/{conversation_id}/erase",
        "/api/inbox/conversations/{conversation_id}/template",
        "/api/inbox/templates",
        "/api/inbox/templates/drafts/{draft_id}",
    }


def test_operator_add_command(settings: Settings, db: psycopg.Connection) -> None:
    created = run_waypost(settings, "operator", "add", "Sam@Example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    row = db.execute("SELECT email, password_hash FROM operators").fetchone()
    assert row["email"] == "sam@example.com" and row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in created.stdout + created.stderr
    twice = run_waypost(settings, "operator", "add", "sam@example.com", "--password-stdin", stdin=PASSWORD + "\n")
    assert twice.returncode == 1 and "exists already" in twice.stderr
    short = run_waypost(settings, "operator", "add", "x@example.com", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    reset = run_waypost(
        settings,
        "operator",
        "add",
        "sam@example.com",
        "--password-stdin",
        "--reset-password",
        stdin="another long password\n",
    )
    assert reset.returncode == 0, reset.stderr
