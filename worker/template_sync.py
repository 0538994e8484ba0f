"""The sweep's scheduled template sync: when WHATSAPP_BUSINESS_ACCOUNT_ID is set and the last
successful sync (the sweep's or `waypost templates sync`) is WAYPOST_TEMPLATE_SYNC_SECONDS old.

Two sweeps at once sync once: each first claims the account's `template_syncs` row with a
conditional update, and only the one that took the claim calls Meta. A failed sync (Meta down,
refusing the token…) is logged, counted in the sweep's report and releases the claim, so the next
sweep tries again; it never stops the rest of the sweep. A claim whose sweep died is taken over
after LEASE_SECONDS. The token goes to the Graph API host only (worker/templates.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from waypost.db import execute, fetch_optional
from waypost.errors import TemplateSyncFailed
from waypost.settings import ConfigurationError, Settings
from worker.templates import sync

logger = logging.getLogger(__name__)

# Longer than a sync takes (a few pages of a few seconds each); past it a sweep takes the claim over.
LEASE_SECONDS = 900.0


@dataclasses.dataclass(frozen=True)
class ScheduledSync:
    ran: bool = False
    listed: int = 0
    failed: bool = False


async def sync_if_due(pool: AsyncConnectionPool[Any], settings: Settings) -> ScheduledSync:
    waba_id = settings.whatsapp_business_account_id
    if not waba_id or settings.template_sync_seconds <= 0:
        return ScheduledSync()
    async with pool.connection() as conn:
        claimed = await fetch_optional(
            conn, "template_sync_claim", waba_id=waba_id, every=settings.template_sync_seconds, lease=LEASE_SECONDS
        )
    if claimed is None:
        return ScheduledSync()  # synced recently, or another sweep is syncing now
    try:
        async with pool.connection() as conn:
            result = await sync(conn, settings)
    # psycopg.Error: e.g. a deadlock with a webhook about the same templates; the next sweep retries
    except (TemplateSyncFailed, ConfigurationError, httpx.HTTPError, psycopg.Error) as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        logger.warning("sweep: template sync failed, the next sweep tries again: %s", error)
        async with pool.connection() as conn:
            await execute(conn, "template_sync_failed", waba_id=waba_id, error=error)
        return ScheduledSync(ran=True, failed=True)
    logger.info("sweep: synced %d template(s), %d deleted", result.listed, len(result.deleted))
    return ScheduledSync(ran=True, listed=result.listed)
