"""Who may use the inbox: signed-cookie sessions, CSRF tokens and rate-limited sign-in.

Sessions are Starlette's SessionMiddleware (itsdangerous-signed cookie, HttpOnly, SameSite=Lax,
Secure when the request came over HTTPS as uvicorn reports it, never from a client header).
A session holds the operator id and a CSRF token; every state-changing request must echo the token
(form field `csrf_token` or header `X-CSRF-Token`), compared in constant time.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from waypost import operators
from waypost.db import fetchone
from waypost.sql import query
from webhook.middleware import json_error
from webhook.signature import tokens_equal
from webhook.state import AppState, app_state

logger = logging.getLogger(__name__)

SESSION_COOKIE = "waypost_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INBOX_PREFIXES = ("/inbox", "/api/inbox")
LOGIN_PATH = "/inbox/login"
# Failures allowed per client address, as a multiple of those allowed per email.
CLIENT_FAILURE_FACTOR = 4

Endpoint = Callable[[Request], Awaitable[Response]]


class InboxSessionMiddleware:
    """Session cookies on inbox paths only, signed with WAYPOST_SESSION_SECRET.

    Built on the first request, from the settings the lifespan resolved; without a secret the
    inbox is off and its endpoints answer 503.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._by_scheme: dict[bool, SessionMiddleware] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(INBOX_PREFIXES):
            await self.app(scope, receive, send)
            return
        state: AppState = scope["app"].state.waypost
        secret = state.settings.session_secret
        if secret is None:
            await self.app(scope, receive, send)
            return
        if self._by_scheme is None:
            common: dict[str, Any] = {
                "secret_key": secret.get_secret_value(),
                "session_cookie": SESSION_COOKIE,
                "max_age": state.settings.session_max_age_seconds,
                "same_site": "lax",
            }
            self._by_scheme = {
                https: SessionMiddleware(self.app, https_only=https, **common) for https in (False, True)
            }
        await self._by_scheme[scope.get("scheme") == "https"](scope, receive, send)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


async def csrf_ok(request: Request) -> bool:
    expected = request.session.get("csrf")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    return bool(expected) and tokens_equal(given, str(expected))


def inbox_disabled() -> Response:
    return json_error(503, "INBOX_DISABLED", "the operator inbox is off: set WAYPOST_SESSION_SECRET (32+ characters)")


async def current_operator(request: Request) -> dict[str, Any] | None:
    operator_id = request.session.get("operator_id")
    if not isinstance(operator_id, int):
        return None
    async with app_state(request).pool.connection() as conn:
        operator = await fetchone(conn, "operator_by_id", operator_id=operator_id)
    if operator is None:  # deleted or disabled since: the signed cookie alone is not enough
        request.session.clear()
    return operator


def _guard(*, api: bool) -> Callable[[Endpoint], Endpoint]:
    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            if app_state(request).settings.session_secret is None:
                return inbox_disabled()
            operator = await current_operator(request)
            if operator is None:
                if api:
                    return json_error(401, "UNAUTHENTICATED", "sign in at /inbox/login first")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{LOGIN_PATH}?next={target}", status_code=303)
            if request.method in UNSAFE_METHODS and not await csrf_ok(request):
                return json_error(403, "CSRF", "missing or wrong CSRF token; reload the page")
            request.state.operator = operator
            return await endpoint(request)

        return guarded

    return decorate


operator_api = _guard(api=True)
operator_page = _guard(api=False)


def client_ip(request: Request) -> str:
    # The peer address as uvicorn saw it (or as its --forwarded-allow-ips proxies vouch for it):
    # never a header the client wrote.
    return request.client.host if request.client else "unknown"


class SignInRefused(Exception):
    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def sign_in(request: Request, email: str, password: str) -> dict[str, Any]:
    """Check the credentials, within the rate limit; on success the session belongs to the operator."""
    state = app_state(request)
    settings = state.settings
    email = email.strip().lower()[:320]
    ip = client_ip(request)
    # The attempt is written down (as a failure) before it is judged, so that parallel guesses
    # count against each other; a success is marked as such afterwards.
    async with state.pool.connection() as conn:
        attempt = await fetchone(conn, "sign_in_attempt_insert", email=email, client_ip=ip)
        assert attempt is not None
    async with state.pool.connection() as conn:
        recent = await fetchone(
            conn, "sign_in_recent_failures", email=email, client_ip=ip, window=settings.sign_in_window_seconds
        )
        assert recent is not None
        operator = await fetchone(conn, "operator_by_email", email=email)
    if (
        recent["by_email"] > settings.sign_in_max_failures
        or recent["by_client"] > settings.sign_in_max_failures * CLIENT_FAILURE_FACTOR
    ):
        logger.warning("sign-in refused: too many failures (client %s)", ip)
        raise SignInRefused("Too many failed sign-ins. Try again later.", retry_after=int(recent["retry_after"]) + 1)
    password_hash = operator["password_hash"] if operator else None
    if not await anyio.to_thread.run_sync(operators.check_password, password_hash, password) or operator is None:
        logger.warning("sign-in failed (client %s)", ip)
        raise SignInRefused("Wrong email or password.")
    async with state.pool.connection() as conn:
        await conn.execute(query("sign_in_succeeded"), {"attempt_id": attempt["id"]})
        rehashed = operators.rehash_if_needed(password_hash, password)
        await conn.execute(query("operator_signed_in"), {"operator_id": operator["id"], "password_hash": rehashed})
    request.session.clear()
    request.session.update({"operator_id": operator["id"], "csrf": secrets.token_urlsafe(32)})
    logger.info("operator %s signed in", operator["id"])
    return {"id": operator["id"], "email": operator["email"]}
