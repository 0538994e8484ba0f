"""`waypost worker`: the procrastinate worker with Waypost's settings and one shared pool."""

from __future__ import annotations

import logging

from waypost.settings import Settings
from worker.queue import app, open_app, worker_options

logger = logging.getLogger(__name__)


async def run_worker(settings: Settings) -> None:
    pool = await open_app(settings)
    try:
        options = worker_options(settings)
        logger.info(
            "worker starting concurrency=%s poll_interval=%ss",
            options["concurrency"],
            options["fetch_job_polling_interval"],
        )
        await app.run_worker_async(**options, additional_context={"settings": settings})
    finally:
        await app.close_async()
        await pool.close()
