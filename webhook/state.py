"""What the web app's endpoints depend on, built once in the lifespan and kept on app.state."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from starlette.requests import Request

from waypost.db import DictPool
from waypost.media_store import MediaStore
from waypost.schema import SchemaReport, verify_async
from waypost.settings import Settings

if TYPE_CHECKING:
    from webhook.group_commit import GroupCommit
    from webhook.inbox.live import InboxFeed

logger = logging.getLogger(__name__)


class SchemaGuard:
    """The last schema verification, refreshed when older than the interval or when asked.

    Checked at startup, on /readyz, and before /api/ requests once the interval has passed, so a
    drifted database is noticed without a restart and without a catalog query per request.
    """

    def __init__(self, pool: DictPool, interval: float) -> None:
        self._pool = pool
        self._interval = interval
        self._report: SchemaReport | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> SchemaReport:
        async with self._lock:
            async with self._pool.connection() as conn:
                report = await verify_async(conn)
            if not report.ok and (self._report is None or self._report.ok):
                logger.error("DB_MISMATCH: %s", "; ".join(report.problems))
            self._report, self._checked_at = report, time.monotonic()
            return report

    async def current(self) -> SchemaReport:
        if self._report is None or time.monotonic() - self._checked_at > self._interval:
            return await self.refresh()
        return self._report


@dataclasses.dataclass(frozen=True)
class AppState:
    settings: Settings
    pool: DictPool
    schema: SchemaGuard
    media_store: MediaStore
    webhooks: GroupCommit  # the common webhook's statements (webhook/group_commit.py)
    feed: InboxFeed | None = None  # the live inbox feed; None when the inbox is off


def app_state(request: Request) -> AppState:
    """The dependencies the lifespan built, for an endpoint."""
    return request.app.state.waypost


def path_for(request: Request, name: str, /, **params: object) -> str:
    """A named route's path, without scheme and host: an absolute URL (`request.url_for`) would be
    built from the Host header the client sent."""
    return str(request.app.url_path_for(name, **params))
