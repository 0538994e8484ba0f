"""The Starlette app. `uvicorn webhook.app:app` serves it with settings from the environment;
`waypost serve` builds it with create_app(settings)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from waypost.db import create_pool
from waypost.heap import freeze_startup
from waypost.logs import setup_logging
from waypost.media_store import MediaStore
from waypost.settings import Settings, load_settings
from webhook import endpoints, warmup
from webhook.errors import exception_handlers
from webhook.group_commit import GroupCommit
from webhook.headers import SecurityHeadersMiddleware
from webhook.inbox import api, knowledge, live, pages, template_drafts
from webhook.inbox.auth import InboxSessionMiddleware
from webhook.limits import BodyLimit, BodyLimitMiddleware
from webhook.middleware import RequestIdMiddleware, SchemaGuardMiddleware
from webhook.state import AppState, SchemaGuard

logger = logging.getLogger(__name__)

API = "/api"
# Meta's webhook (GET for the subscription handshake, POST for deliveries), as set in Meta's dashboard
WEBHOOK = "/webhooks/whatsapp"
WEBHOOK_PATH = API + WEBHOOK
# Every inbox endpoint that is a page: its refusals are answered as an error page, not JSON
PAGE_ENDPOINTS = pages.PAGES | knowledge.PAGES | template_drafts.PAGES


class Group(Mount):
    """A Mount that leaves its bare prefix with a slash ("/inbox/") unmatched, so that Starlette's
    slash redirect and 404 answer it as they did before the routes were grouped."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.FULL and scope["path"] == child_scope["root_path"] + "/":
            return Match.NONE, {}
        return match, child_scope


def routes(settings: Settings) -> list[BaseRoute]:
    """Every path of the app. Middleware that concerns one group is applied to that group."""
    sessions = [Middleware(InboxSessionMiddleware, settings=settings)]
    its_own_limit = [Middleware(BodyLimit, limit=None)]  # the webhook journals even a body it refuses
    return [
        Route("/healthz", endpoints.healthz, methods=["GET"], name="healthz"),
        Route("/readyz", endpoints.readyz, methods=["GET"], name="readyz"),
        Route("/openapi.json", endpoints.openapi, methods=["GET"], include_in_schema=False, name="openapi"),
        Route("/metrics", endpoints.metrics_endpoint, methods=["GET"], name="metrics"),
        # Everything under /api/ answers DB_MISMATCH while the schema does not match.
        Group(
            API,
            middleware=[Middleware(SchemaGuardMiddleware, webhook=WEBHOOK_PATH)],
            routes=[
                Route(
                    WEBHOOK,
                    endpoints.verify_subscription,
                    methods=["GET"],
                    name="webhook_verify",
                    middleware=its_own_limit,
                ),
                Route(WEBHOOK, endpoints.receive_webhook, methods=["POST"], name="webhook", middleware=its_own_limit),
                Route("/cron/run-outbound-jobs", endpoints.run_outbound_jobs, methods=["GET", "POST"], name="cron"),
                # the operator inbox's JSON API (described in /openapi.json)
                Group("/inbox", routes=[*api.routes, *template_drafts.api_routes], middleware=sessions, name="api"),
            ],
        ),
        # The operator inbox's pages, their live fragments and event stream, and static files.
        Route("/inbox", pages.conversations_page, methods=["GET"], middleware=sessions, name="inbox"),
        Group(
            "/inbox",
            routes=[*template_drafts.page_routes, *pages.routes, *knowledge.routes],
            middleware=sessions,
            name="inbox",
        ),
    ]


def trusted_proxies(settings: Settings) -> list[Middleware]:
    """X-Forwarded-For and X-Forwarded-Proto, believed only from WAYPOST_TRUSTED_PROXIES (uvicorn's
    own ProxyHeadersMiddleware); none at all when no proxy is trusted."""
    proxies = list(settings.trusted_proxies)
    # uvicorn types its middleware with its own (equivalent) ASGI types
    return [Middleware(cast(Any, ProxyHeadersMiddleware), trusted_hosts=proxies)] if proxies else []


def warmup_connections(settings: Settings) -> int:
    """The connections the pool opens at start (WAYPOST_DB_POOL_MIN_SIZE), or the webhook statements
    it runs at once if more, within the pool's size."""
    return min(max(settings.db_pool_min_size, settings.webhook_statements), settings.db_pool_max_size)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; without `settings`, they are read from the environment now."""
    resolved = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings is None:  # no caller set logging up
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
        media_store = MediaStore(resolved)  # a broken WAYPOST_MEDIA_STORE_URL stops the start here
        pool = create_pool(resolved, name="waypost-web")
        await pool.open(wait=True, timeout=15)
        feed = live.InboxFeed(resolved.require_database_url()) if inbox else None
        guard = SchemaGuard(pool, resolved.schema_check_interval)
        try:
            report = await guard.refresh()
            logger.info("web app ready, schema %s", "ok" if report.ok else "MISMATCH")
            if feed is not None:
                feed.start()
            webhooks = GroupCommit(pool, resolved.turn_window, resolved.webhook_statements)
            if report.ok:  # the webhook statements of a schema that does not match would fail anyway
                await warmup.warm_up(pool, webhooks, warmup_connections(resolved))
            app.state.waypost = AppState(
                settings=resolved, pool=pool, schema=guard, media_store=media_store, webhooks=webhooks, feed=feed
            )
            freeze_startup()  # what start-up loaded stays out of the collector's scans
            yield
        finally:
            if feed is not None:
                await feed.stop()
            await guard.aclose()
            await pool.close()
            await media_store.aclose()

    return Starlette(
        routes=routes(resolved),
        middleware=[
            *trusted_proxies(resolved),
            Middleware(RequestIdMiddleware),
            Middleware(SecurityHeadersMiddleware),
            Middleware(BodyLimitMiddleware),
        ],
        exception_handlers=exception_handlers(functools.partial(pages.error_page, endpoints=PAGE_ENDPOINTS)),
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
