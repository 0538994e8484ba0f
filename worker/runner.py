"""`waypost worker`: the procrastinate worker with Waypost's settings and one shared pool."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from waypost import metrics
from waypost.settings import Settings
from worker.queue import app, open_app

logger = logging.getLogger(__name__)


def serve_metrics(settings: Settings) -> None:
    """The worker's /metrics, on its own address: WAYPOST_WORKER_METRICS_HOST (127.0.0.1 by default,
    so only the machine itself, or a sidecar, can scrape it) and WAYPOST_WORKER_METRICS_PORT."""
    if not settings.worker_metrics_port:
        return
    registry = metrics.process_registry()
    registry.register(metrics.DatabaseCollector(settings.require_database_url()))
    start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry)
    logger.info("worker metrics on http://%s:%s/metrics", settings.worker_metrics_host, settings.worker_metrics_port)


async def run_worker(settings: Settings) -> None:
    serve_metrics(settings)
    pool = await open_app(settings)
    try:
        # The settings make the worker's options (worker.queue.WaypostApp.run_worker_async).
        await app.run_worker_async(additional_context={"settings": settings})
    finally:
        await app.close_async()
        await pool.close()
