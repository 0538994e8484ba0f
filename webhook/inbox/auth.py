"""Who may use the inbox: server-side sessions, CSRF tokens and rate-limited sign-in.

The cookie is Starlette's SessionMiddleware (itsdangerous-signed, HttpOnly, SameSite=Lax, Secure
when the request came over HTTPS as uvicorn or a trusted proxy reports it, never from a client's own
header). It carries a CSRF token and, once signed in, a random session token; the session itself is
a row of `operator_sessions` (only the token's SHA-256 is stored), checked on every request, so that
signing out, a password reset, disabling the operator or `waypost operator sessions --revoke` end it
at once, and so does WAYPOST_SESSION_MAX_AGE_SECONDS without a request. Every state-changing request
must echo the CSRF token (form field `csrf_token` or header `X-CSRF-Token`), compared in constant time.

Sign-in is throttled per (email, client address) and per client address, so that nobody can lock
an operator out by knowing their email; failures against one email from many addresses slow every
attempt on it (WAYPOST_SIGN_IN_MAX_FAILURES, README "Operator inbox").
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from waypost import operators
from waypost.db import execute, fetch_one, fetch_optional
from waypost.errors import (
    CsrfRefused,
    InboxDisabled,
    TooManySignIns,
    Unauthenticated,
    UnusableCredentials,
    WrongCredentials,
)
from waypost.settings import Settings
from waypost.signing import tokens_equal
from waypost.text import unfit
from webhook.state import app_state, path_for

logger = logging.getLogger(__name__)

SESSION_COOKIE = "waypost_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_KEY = "sid"  # the session token, in the signed cookie
# Failures allowed per client address, as a multiple of those allowed per (email, address).
CLIENT_FAILURE_FACTOR = 4
# Past the allowed failures on one email from anywhere, every attempt on it waits this much per
# failure beyond, up to the cap: guessing slows down, the right password still gets in.
SLOWDOWN_PER_FAILURE = 0.25
SLOWDOWN_CAP = 5.0

Endpoint = Callable[[Request], Awaitable[Response]]


class InboxSessionMiddleware:
    """Session cookies for the inbox's route groups, signed with WAYPOST_SESSION_SECRET; Secure when
    the request came over HTTPS. Without a secret the inbox is off and its endpoints answer 503."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._by_scheme: dict[bool, ASGIApp] = {False: app, True: app}
        secret = settings.session_secret
        if secret is not None:
            common: dict[str, Any] = {
                "secret_key": secret.get_secret_value(),
                "session_cookie": SESSION_COOKIE,
                "max_age": settings.session_max_age_seconds,
                "same_site": "lax",
            }
            self._by_scheme = {https: SessionMiddleware(app, https_only=https, **common) for https in (False, True)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _live_session(request: Request, query_name: str) -> dict[str, Any] | None:
    """The row `query_name` finds for the request's session token, if the session is live."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str):
        return None
    state = app_state(request)
    async with state.pool.connection() as conn:
        return await fetch_optional(
            conn,
            query_name,
            token_sha256=token_hash(token),
            idle_seconds=state.settings.session_max_age_seconds,
        )


async def current_operator(request: Request) -> dict[str, Any] | None:
    """The operator of the request's session, if it is live; a dead session's cookie is cleared."""
    operator = await _live_session(request, "operator_session_touch")
    if operator is None:  # ended, expired, or its operator disabled: the signed cookie alone is not enough
        request.session.clear()
    return operator


async def session_live(request: Request) -> bool:
    """Whether the request's session is still live, without counting as the operator's activity."""
    return await _live_session(request, "operator_session_live") is not None


async def end_session(request: Request, reason: str) -> None:
    """Sign-out: the session ends on the server, whatever becomes of the cookie."""
    token = request.session.get(SESSION_KEY)
    if isinstance(token, str):
        async with app_state(request).pool.connection() as conn:
            await execute(conn, "operator_session_end", token_sha256=token_hash(token), reason=reason)
    request.session.clear()


def require_inbox(request: Request) -> None:
    if app_state(request).settings.session_secret is None:
        raise InboxDisabled()


def _guard(*, api: bool) -> Callable[[Endpoint], Endpoint]:
    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            require_inbox(request)
            operator = await current_operator(request)
            if operator is None:
                if api:
                    raise Unauthenticated(f"sign in at {path_for(request, 'inbox:login')} first")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{path_for(request, 'inbox:login')}?next={target}", status_code=303)
            if request.method in UNSAFE_METHODS and not await csrf_ok(request):
                raise CsrfRefused()
            request.state.operator = operator
            return await endpoint(request)

        return guarded

    return decorate


operator_api = _guard(api=True)
operator_page = _guard(api=False)


def client_ip(request: Request) -> str:
    """The client address sign-in throttling counts: the peer as uvicorn saw it, or as a proxy
    named in WAYPOST_TRUSTED_PROXIES vouches for it (X-Forwarded-For), never a header an untrusted
    client wrote. An IPv6 client is its /64: one subscriber holds a whole /64 and could otherwise
    take a fresh address for every guess."""
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


async def sign_in(request: Request, email: str, password: str) -> dict[str, Any]:
    """Check the credentials, within the rate limits; on success a new session belongs to the operator."""
    if unfit(email) or unfit(password):
        raise UnusableCredentials()
    state = app_state(request)
    settings = state.settings
    email = email.strip().lower()[:320]
    ip = client_ip(request)
    # The attempt is written down (as a failure) before it is judged, so that parallel guesses
    # count against each other; a success is marked as such afterwards.
    async with state.pool.connection() as conn:  # committed on its own, before the count
        attempt = await fetch_one(conn, "sign_in_attempt_insert", email=email, client_ip=ip)
    async with state.pool.connection() as conn:
        recent = await fetch_one(
            conn, "sign_in_recent_failures", email=email, client_ip=ip, window=settings.sign_in_window_seconds
        )
    allowed = settings.sign_in_max_failures
    if recent["by_email_and_client"] > allowed or recent["by_client"] > allowed * CLIENT_FAILURE_FACTOR:
        logger.warning("sign-in refused: too many failures from client %s", ip)
        raise TooManySignIns(retry_after=int(recent["retry_after"]) + 1)
    if recent["by_email"] > allowed:
        # Many addresses failed on this email: slow every attempt on it down, refuse none.
        delay = min((recent["by_email"] - allowed) * SLOWDOWN_PER_FAILURE, SLOWDOWN_CAP)
        logger.warning("sign-in slowed by %.2fs: %s recent failures on this email", delay, recent["by_email"])
        await anyio.sleep(delay)
    async with state.pool.connection() as conn:
        operator = await fetch_optional(conn, "operator_by_email", email=email)
    password_hash = operator["password_hash"] if operator else None
    if not await anyio.to_thread.run_sync(operators.check_password, password_hash, password) or operator is None:
        logger.warning("sign-in failed (client %s)", ip)
        raise WrongCredentials()
    token = secrets.token_urlsafe(32)
    async with state.pool.connection() as conn, conn.transaction():
        await execute(conn, "sign_in_succeeded", attempt_id=attempt["id"])
        rehashed = operators.rehash_if_needed(operator["password_hash"], password)
        await execute(conn, "operator_signed_in", operator_id=operator["id"], password_hash=rehashed)
        await execute(
            conn,
            "operator_session_start",
            operator_id=operator["id"],
            token_sha256=token_hash(token),
            client_ip=ip,
            user_agent=(request.headers.get("user-agent") or "")[:300] or None,
        )
    # A fresh cookie: whatever session the browser carried before (fixation) is not this one, and
    # it ends on the server too (whoever copied that cookie keeps nothing).
    await end_session(request, "replaced")
    request.session.update({SESSION_KEY: token, "csrf": secrets.token_urlsafe(32)})
    logger.info("operator %s signed in", operator["id"])
    return {"id": operator["id"], "email": operator["email"]}
