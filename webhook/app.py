"""The Starlette app. `uvicorn webhook.app:app` serves it with settings from the environment;
`waypost serve` builds it with create_app(settings)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import psycopg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from waypost.db import create_pool
from waypost.logs import setup_logging
from waypost.settings import Settings, load_settings
from webhook import endpoints
from webhook.errors import HttpError
from webhook.headers import SecurityHeadersMiddleware
from webhook.inbox import api, live, pages
from webhook.inbox.auth import InboxSessionMiddleware
from webhook.limits import BodyLimitMiddleware
from webhook.middleware import (
    WEBHOOK_PATH,
    RequestIdMiddleware,
    SchemaGuardMiddleware,
    db_unavailable_response,
    json_error,
)
from webhook.state import AppState, SchemaGuard

logger = logging.getLogger(__name__)


routes = [
    Route(WEBHOOK_PATH, endpoints.verify_subscription, methods=["GET"]),
    Route(WEBHOOK_PATH, endpoints.receive_webhook, methods=["POST"]),
    Route("/api/cron/run-outbound-jobs", endpoints.run_outbound_jobs, methods=["GET", "POST"]),
    Route("/healthz", endpoints.healthz, methods=["GET"]),
    Route("/readyz", endpoints.readyz, methods=["GET"]),
    Route("/openapi.json", endpoints.openapi, methods=["GET"], include_in_schema=False),
    Route("/metrics", endpoints.metrics_endpoint, methods=["GET"]),
    # Operator inbox: pages and their live fragments
    Route("/inbox/login", pages.login_page, methods=["GET"]),
    Route("/inbox/login", pages.login, methods=["POST"]),
    Route("/inbox/logout", pages.logout, methods=["POST"]),
    Route("/inbox", pages.conversations_page, methods=["GET"]),
    Route("/inbox/conversations/{conversation_id:int}", pages.conversation_page, methods=["GET"]),
    Route("/inbox/notifications", pages.notifications_page, methods=["GET"]),
    Route("/inbox/fragments/conversations", pages.conversations_fragment, methods=["GET"]),
    Route("/inbox/fragments/conversations/{conversation_id:int}", pages.conversation_fragment, methods=["GET"]),
    Route("/inbox/fragments/notifications", pages.notifications_fragment, methods=["GET"]),
    Route("/inbox/fragments/badge", pages.badge_fragment, methods=["GET"]),
    Route("/inbox/events", live.events, methods=["GET"]),
    Mount(pages.STATIC_PATH, StaticFiles(directory=pages.HERE / "static"), name="inbox-static"),
    # Operator inbox: JSON API (described in /openapi.json)
    Route("/api/inbox/conversations", api.list_conversations, methods=["GET"]),
    Route("/api/inbox/conversations/{conversation_id:int}", api.get_conversation, methods=["GET"]),
    Route("/api/inbox/conversations/{conversation_id:int}/messages", api.send_message, methods=["POST"]),
    Route("/api/inbox/conversations/{conversation_id:int}/ai", api.set_ai, methods=["POST"]),
    Route("/api/inbox/conversations/{conversation_id:int}/read", api.mark_read, methods=["POST"]),
    Route("/api/inbox/conversations/{conversation_id:int}/delete", api.delete_conversation, methods=["POST"]),
    Route("/api/inbox/conversations/{conversation_id:int}/restore", api.restore_conversation, methods=["POST"]),
    Route("/api/inbox/notifications", api.list_notifications, methods=["GET"]),
    Route("/api/inbox/notifications/{notification_id:int}/read", api.read_notification, methods=["POST"]),
    Route("/api/inbox/notifications/{notification_id:int}/snooze", api.snooze_notification, methods=["POST"]),
]


async def http_error(request: Request, exc: Exception) -> Response:
    """Every HttpError, rendered once: a page for the inbox's pages, the JSON envelope elsewhere."""
    assert isinstance(exc, HttpError)
    if pages.is_page(request):
        return pages.error_page(request, exc)
    return json_error(exc.status, exc.code, str(exc))


async def database_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("database unavailable: %s", exc)
    return db_unavailable_response()


class TrustedProxies:
    """X-Forwarded-For and X-Forwarded-Proto, believed only from WAYPOST_TRUSTED_PROXIES (uvicorn's
    own ProxyHeadersMiddleware, applied with the settings the lifespan resolved)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._trusting: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        trusting = self._trusting
        if trusting is None:
            proxies = list(scope["app"].state.waypost.settings.trusted_proxies)
            # uvicorn types its middleware with its own (equivalent) ASGI types
            wrapped = ProxyHeadersMiddleware(cast(Any, self.app), trusted_hosts=proxies)
            trusting = self._trusting = cast(ASGIApp, wrapped) if proxies else self.app
        await trusting(scope, receive, send)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; without `settings`, they are read from the environment at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        resolved = settings or load_settings()
        if settings is None:  # started as `uvicorn webhook.app:app`: no CLI set logging up
            setup_logging(resolved.log_level, resolved.log_format, resolved.secret_values())
        resolved.check_webhook_security()
        if resolved.dangerously_skip_signature_check and not resolved.whatsapp_app_secret:
            logger.warning(
                "WEBHOOK SIGNATURES ARE NOT VERIFIED (WAYPOST_DANGEROUSLY_SKIP_SIGNATURE_CHECK): "
                "anyone can post messages. Never run like this in production."
            )
        inbox = resolved.check_inbox()
        if not inbox:
            logger.warning("operator inbox off: set WAYPOST_SESSION_SECRET to serve /inbox")
        pool = create_pool(resolved, name="waypost-web")
        await pool.open(wait=True, timeout=15)
        feed = live.InboxFeed(resolved.require_database_url()) if inbox else None
        try:
            guard = SchemaGuard(pool, resolved.schema_check_interval)
            report = await guard.refresh()
            logger.info("web app ready, schema %s", "ok" if report.ok else "MISMATCH")
            if feed is not None:
                feed.start()
            app.state.waypost = AppState(settings=resolved, pool=pool, schema=guard, feed=feed)
            yield
        finally:
            if feed is not None:
                await feed.stop()
            await pool.close()

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(TrustedProxies),
            Middleware(RequestIdMiddleware),
            Middleware(SecurityHeadersMiddleware),
            Middleware(BodyLimitMiddleware),
            Middleware(SchemaGuardMiddleware),
            Middleware(InboxSessionMiddleware),
        ],
        exception_handlers={HttpError: http_error, psycopg.OperationalError: database_unavailable},
        lifespan=lifespan,
    )


def __getattr__(name: str) -> Starlette:
    """`webhook.app:app`, built when uvicorn first asks for it (PEP 562), once logging is set up from
    the environment, so that uvicorn's own lines from then on ("Started server process", ...) come
    out in WAYPOST_LOG_FORMAT too. Importing this module for create_app() builds nothing."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    built = globals()["app"] = create_app(settings)
    return built
