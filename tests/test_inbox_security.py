"""The inbox against an attacker and an odd operator: body limits, sessions that end on the server,
security headers, sign-in throttling that cannot lock the right person out, trusted proxies only,
and a clear 4xx (never a 500) for input the database cannot take."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from starlette.requests import Request

from tests.conftest import ServerThread, WebServer, post_webhook, run_waypost, waypost_env
from tests.inbox_client import PASSWORD, Inbox, create_operator, sign_in
from waypost.devtools import payloads
from waypost.devtools.net import free_port, wait_until_ready
from waypost.settings import Settings
from webhook.app import create_app
from webhook.inbox import live
from webhook.inbox.auth import client_ip

EMAIL = "op@example.com"


@pytest.fixture
def inbox(client: httpx.Client, database_url: str) -> Inbox:
    create_operator(database_url)
    return Inbox(client)


def open_conversation(client: httpx.Client, db: psycopg.Connection) -> int:
    message = payloads.text_message("hello", wa_id="16505551234")
    assert post_webhook(client, payloads.dumps(payloads.inbound(message))).status_code == 200
    return int(db.execute("SELECT id FROM conversations").fetchone()["id"])


def client_from(web: ServerThread, address: str, **options: object) -> httpx.Client:
    """A client whose connections come from `address` (any 127.0.0.0/8 address reaches 127.0.0.1)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=web.url, transport=transport, timeout=30, **options)  # type: ignore[arg-type]


# --- 3. every body has a limit ------------------------------------------------------------------


def test_every_body_has_a_limit_that_fits_it(inbox: Inbox, db: psycopg.Connection) -> None:
    client = inbox.client
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # A 1,000-field form of 1 MB each once took the web process to 1 GB before any check.
    declared = client.post("/inbox/login", content=b"email=" + b"x" * 1_000_000, headers=form)
    assert declared.status_code == 413
    streamed = client.post("/inbox/login", content=iter([b"f=" + b"x" * 65_536] * 16), headers=form)
    assert streamed.status_code == 413
    assert "content-length" not in streamed.request.headers  # chunked: the limit counts as it reads
    # An operator message: Meta's 4,096 characters fit even as \\uXXXX escapes; far more does not.
    conversation = open_conversation(client, db)
    path = f"/api/inbox/conversations/{conversation}/messages"
    longest = inbox.post(path, {"body": "\U0001f600" * 4096, "client_key": "longest-message"})
    assert longest.status_code == 202, longest.text
    too_big = inbox.post(path, {"body": "x" * 70_000})
    assert (too_big.status_code, too_big.json()["code"]) == (413, "BODY_TOO_LARGE")
    # The small JSON endpoints take a small object.
    padded = inbox.post(f"/api/inbox/conversations/{conversation}/ai", {"enabled": True, "pad": "x" * 5000})
    assert padded.status_code == 413
    assert inbox.post(f"/api/inbox/conversations/{conversation}/ai", {"enabled": True}).status_code == 200


# --- 4. sessions end on the server ---------------------------------------------------------------


def test_a_signed_out_cookie_replayed_reads_and_posts_nothing(
    inbox: Inbox, web: WebServer, db: psycopg.Connection
) -> None:
    stolen = dict(inbox.client.cookies)
    assert inbox.client.post("/inbox/logout", data={"csrf_token": inbox.csrf}).status_code == 303
    with httpx.Client(base_url=web.url, cookies=stolen) as replay:
        assert replay.get("/api/inbox/conversations").status_code == 401
        csrf = {"X-CSRF-Token": inbox.csrf}
        assert replay.post("/api/inbox/conversations/1/ai", json={"enabled": False}, headers=csrf).status_code == 401
        assert replay.get("/inbox").status_code == 303
    session = db.execute("SELECT ended_at, end_reason, token_sha256 FROM operator_sessions").fetchone()
    assert session["ended_at"] is not None and session["end_reason"] == "signed_out"
    assert stolen["waypost_session"].encode() not in bytes(session["token_sha256"])  # only a hash is stored


def test_an_open_event_stream_ends_with_its_session(
    inbox: Inbox, web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.3)
    page = httpx.Client(base_url=web.url, cookies=dict(inbox.client.cookies), timeout=30)
    with page, page.stream("GET", "/inbox/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: resync"
        assert inbox.client.post("/inbox/logout", data={"csrf_token": inbox.csrf}).status_code == 303
        started = time.monotonic()
        for _ in lines:  # the server ends the stream: the loop ends
            assert time.monotonic() - started < 20, "the stream outlived its session"


def test_signing_in_again_ends_the_session_the_browser_had(
    inbox: Inbox, web: WebServer, db: psycopg.Connection
) -> None:
    before = dict(inbox.client.cookies)
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": inbox.csrf, "next": "/inbox"}
    assert inbox.client.post("/inbox/login", data=form).status_code == 303  # a login form left open
    with httpx.Client(base_url=web.url, cookies=before) as copied:
        assert copied.get("/api/inbox/conversations").status_code == 401
    reasons = [r["end_reason"] for r in db.execute("SELECT end_reason FROM operator_sessions ORDER BY id")]
    assert reasons == ["replaced", None]


def test_an_open_event_stream_does_not_keep_its_session_alive(
    inbox: Inbox, web: WebServer, db: psycopg.Connection, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unattended tab is not an operator at work: its stream's checks do not move the idle clock,
    so the session (and the stream) end once it has idled out."""
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.2)
    page = httpx.Client(base_url=web.url, cookies=dict(inbox.client.cookies), timeout=30)
    with page, page.stream("GET", "/inbox/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: resync"
        idle = settings.session_max_age_seconds
        db.execute("UPDATE operator_sessions SET last_seen_at = now() - make_interval(secs => %s)", [idle - 1])
        started = time.monotonic()
        for _ in lines:  # the session idles out a second from now, and the stream with it
            assert time.monotonic() - started < 20, "the stream kept its session alive"
    assert inbox.get("/api/inbox/conversations").status_code == 401


def test_an_ipv6_client_is_counted_as_its_64(settings: Settings) -> None:
    def client(host: str) -> str:
        return client_ip(Request({"type": "http", "client": (host, 40000), "headers": [], "app": None}))

    assert client("2001:db8:1:2:aaaa::1") == client("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert client("::ffff:203.0.113.9") == "203.0.113.9" and client("203.0.113.9") == "203.0.113.9"


def test_a_new_password_disabling_and_revoking_end_sessions_at_once(
    settings: Settings, web: WebServer, database_url: str
) -> None:
    create_operator(database_url)

    def signed_in() -> httpx.Client:
        client = httpx.Client(base_url=web.url, timeout=30)
        assert sign_in(client).status_code == 303
        assert client.get("/api/inbox/conversations").status_code == 200
        return client

    ways = [
        ("operator", "add", EMAIL, "--password-stdin", "--reset-password"),
        ("operator", "disable", EMAIL),
        ("operator", "sessions", EMAIL, "--revoke"),
    ]
    for way in ways:
        client = signed_in()
        done = run_waypost(settings, *way, stdin=PASSWORD + "\n")
        assert done.returncode == 0, done.stdout + done.stderr
        assert client.get("/api/inbox/conversations").status_code == 401, way
        if way[1] == "disable":
            assert sign_in(httpx.Client(base_url=web.url)).status_code == 401  # nor can they sign in again
            assert run_waypost(settings, "operator", "enable", EMAIL).returncode == 0
        client.close()
    assert "Ended 1 session(s)" in done.stdout
    listed = run_waypost(settings, "operator", "sessions", EMAIL)
    assert listed.returncode == 0
    states = [line.split("\t")[1] for line in listed.stdout.splitlines()]
    assert states == ["ended: revoked", "ended: disabled", "ended: password_reset"], listed.stdout


def test_a_session_ends_after_the_idle_timeout(inbox: Inbox, db: psycopg.Connection, settings: Settings) -> None:
    idle = settings.session_max_age_seconds
    db.execute("UPDATE operator_sessions SET last_seen_at = now() - make_interval(secs => %s)", [idle - 60])
    assert inbox.get("/api/inbox/conversations").status_code == 200  # used within the timeout: alive
    seen = db.execute("SELECT now() - last_seen_at < interval '1 minute' AS fresh FROM operator_sessions").fetchone()
    assert seen["fresh"]  # and the request moved its clock
    db.execute("UPDATE operator_sessions SET last_seen_at = now() - make_interval(secs => %s)", [idle + 1])
    assert inbox.get("/api/inbox/conversations").status_code == 401


# --- 5. security headers -----------------------------------------------------------------------


def test_pages_the_sign_in_page_and_the_api_carry_security_headers(inbox: Inbox, web: WebServer) -> None:
    with httpx.Client(base_url=web.url) as anonymous:
        login = anonymous.get("/inbox/login")
    answers = {
        "sign-in page": login,
        "inbox page": inbox.get("/inbox"),
        "missing page": inbox.get("/inbox/conversations/424242"),
        "fragment": inbox.get("/inbox/fragments/conversations"),
        "json api": inbox.get("/api/inbox/conversations"),
        "script": inbox.get("/inbox/static/inbox.js"),
        "health": inbox.get("/healthz"),
    }
    for what, answer in answers.items():
        headers = answer.headers
        assert headers["x-frame-options"] == "DENY", what
        assert headers["x-content-type-options"] == "nosniff", what
        assert headers["referrer-policy"] == "same-origin", what
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, what
        assert "strict-transport-security" not in headers, what  # plain http here
    for page in ("sign-in page", "inbox page", "missing page", "fragment"):
        assert "script-src 'self'" in answers[page].headers["content-security-policy"]
    assert "default-src 'none'" in answers["json api"].headers["content-security-policy"]


def test_asset_urls_do_not_trust_the_host_header(inbox: Inbox) -> None:
    page = inbox.client.get("/inbox", headers={"Host": "evil.example"})
    assert page.status_code == 200
    assert "evil.example" not in page.text
    assert 'src="/inbox/static/inbox.js"' in page.text and 'href="/inbox/static/inbox.css"' in page.text


# --- 7. sign-in throttling -----------------------------------------------------------------------


def test_knowing_an_email_does_not_lock_its_operator_out(web: WebServer, database_url: str, settings: Settings) -> None:
    create_operator(database_url)
    with client_from(web, "127.0.0.2") as attacker:
        for _ in range(settings.sign_in_max_failures):
            assert sign_in(attacker, password="a guess").status_code == 401
        assert sign_in(attacker).status_code == 429  # that address is locked out, right password or not
    with client_from(web, "127.0.0.3") as operator:
        assert sign_in(operator).status_code == 303  # the operator, elsewhere, is not


def test_failures_from_many_addresses_slow_guessing_but_refuse_nobody(
    web: WebServer, database_url: str, settings: Settings
) -> None:
    create_operator(database_url)
    addresses = [f"127.0.1.{i}" for i in range(1, 2 * settings.sign_in_max_failures + 1)]
    for address in addresses:  # one guess from each: no address reaches its own limit
        with client_from(web, address) as guesser:
            assert sign_in(guesser, password="a guess").status_code == 401
    with client_from(web, "127.0.2.1") as another_guesser:
        started = time.monotonic()
        assert sign_in(another_guesser, password="a guess").status_code == 401  # slowed, not refused
        slowed = time.monotonic() - started
    with client_from(web, "127.0.2.2") as operator:
        assert sign_in(operator).status_code == 303
    excess = len(addresses) + 1 - settings.sign_in_max_failures
    assert slowed >= excess * 0.25 * 0.9


def test_one_address_guessing_many_emails_is_refused(web: WebServer, database_url: str, settings: Settings) -> None:
    create_operator(database_url)
    with client_from(web, "127.0.0.4") as guesser:
        for i in range(4 * settings.sign_in_max_failures):
            assert sign_in(guesser, email=f"user{i}@example.com", password="a guess").status_code == 401
        assert sign_in(guesser).status_code == 429


def test_forwarded_for_is_believed_only_from_named_proxies(
    settings: Settings, database_url: str, db: psycopg.Connection
) -> None:
    create_operator(database_url)
    forged = {"X-Forwarded-For": "203.0.113.9"}
    for proxies, seen in (((), "127.0.0.1"), (("127.0.0.1",), "203.0.113.9")):
        app = create_app(settings.model_copy(update={"trusted_proxies": proxies}))
        with ServerThread(app, proxy_headers=False) as web, httpx.Client(base_url=web.url, headers=forged) as client:
            assert sign_in(client, password="a guess").status_code == 401
        last = db.execute("SELECT client_ip FROM sign_in_attempts ORDER BY id DESC LIMIT 1").fetchone()
        assert last["client_ip"] == seen, proxies


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`waypost serve` as deployed: its own process, default proxy settings."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "waypost.cli", "serve", "--port", str(port)],
        env=waypost_env(settings.model_copy(update={"trusted_proxies": ()})),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def test_waypost_serve_believes_no_forwarded_header_by_default(
    served: str, database_url: str, db: psycopg.Connection
) -> None:
    create_operator(database_url)
    with httpx.Client(base_url=served, headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}) as c:
        login = c.get("/inbox/login")
        assert "secure" not in login.headers["set-cookie"].lower()
        assert sign_in(c, password="a guess").status_code == 401
    assert db.execute("SELECT client_ip FROM sign_in_attempts").fetchone()["client_ip"] == "127.0.0.1"


# --- 10. odd operator input: 400 or 404, never 500 ------------------------------------------------


def test_nul_characters_in_operator_input_are_refused_with_400(
    inbox: Inbox, web: WebServer, db: psycopg.Connection
) -> None:
    with httpx.Client(base_url=web.url) as stranger:
        refused = sign_in(stranger, email="op\x00@example.com")
        assert refused.status_code == 400 and "cannot be used" in refused.text
        assert sign_in(stranger, password="pass\x00word").status_code == 400
    search = inbox.get("/api/inbox/conversations", q="Shee\x00na")
    assert (search.status_code, search.json()["code"]) == (400, "BAD_INPUT")
    page = inbox.get("/inbox", q="\x00")
    assert page.status_code == 400 and "text/html" in page.headers["content-type"]
    conversation = open_conversation(inbox.client, db)
    message = inbox.post(f"/api/inbox/conversations/{conversation}/messages", {"body": "a\x00b"})
    assert (message.status_code, message.json()["code"]) == (400, "BAD_INPUT")
    assert db.execute("SELECT count(*) AS n FROM messages WHERE direction = 'outbound'").fetchone()["n"] == 0


def test_a_conversation_that_does_not_exist_is_the_404_page(inbox: Inbox) -> None:
    for conversation_id in ("424242", "99999999999999999999999"):
        page = inbox.get(f"/inbox/conversations/{conversation_id}")
        assert page.status_code == 404 and "No such conversation" in page.text, page.text
        assert inbox.get(f"/inbox/fragments/conversations/{conversation_id}").status_code == 404
        api = inbox.get(f"/api/inbox/conversations/{conversation_id}")
        assert (api.status_code, api.json()["code"]) == (404, "NOT_FOUND")


# --- 17. labels ----------------------------------------------------------------------------------


def test_filter_labels_read_as_written(inbox: Inbox) -> None:
    page = inbox.get("/inbox").text
    for label in ("unread", "AI paused", "send failed", "outside 24-hour window"):
        assert f">{label}</a>" in page, label
    assert "fAIled" not in page
