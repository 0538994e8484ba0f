"""The Starlette app. `uvicorn webhook.app:app` serves it with settings from the environment."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from waypost.db import create_pool
from waypost.settings import Settings, load_settings
from webhook import endpoints
from webhook.middleware import RequestIdMiddleware, SchemaGuardMiddleware
from webhook.state import AppState, SchemaGuard

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/webhooks/whatsapp"

routes = [
    Route(WEBHOOK_PATH, endpoints.verify_subscription, methods=["GET"]),
    Route(WEBHOOK_PATH, endpoints.receive_webhook, methods=["POST"]),
    Route("/api/cron/run-outbound-jobs", endpoints.run_outbound_jobs, methods=["GET", "POST"]),
    Route("/healthz", endpoints.healthz, methods=["GET"]),
    Route("/readyz", endpoints.readyz, methods=["GET"]),
]


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; without `settings`, they are read from the environment at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        resolved = settings or load_settings()
        resolved.check_webhook_security()
        if resolved.dangerously_skip_signature_check and not resolved.whatsapp_app_secret:
            logger.warning(
                "WEBHOOK SIGNATURES ARE NOT VERIFIED (WAYPOST_DANGEROUSLY_SKIP_SIGNATURE_CHECK): "
                "anyone can post messages. Never run like this in production."
            )
        pool = create_pool(resolved, name="waypost-web")
        await pool.open(wait=True, timeout=15)
        try:
            guard = SchemaGuard(pool, resolved.schema_check_interval)
            report = await guard.refresh()
            logger.info("web app ready, schema %s", "ok" if report.ok else "MISMATCH")
            app.state.waypost = AppState(settings=resolved, pool=pool, schema=guard)
            yield
        finally:
            await pool.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware), Middleware(SchemaGuardMiddleware)],
        lifespan=lifespan,
    )


app = create_app()
