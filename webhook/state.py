"""What the web app's endpoints depend on, built once in the lifespan and kept on app.state."""

from __future__ import annotations

import asyncio
import contextvars
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
    drifted database is noticed without a restart and without a catalog query per request. While the
    last check found the schema whole, its periodic re-check runs beside the requests, which go on
    meanwhile: made in the request path, it held every request that came during it (issue 17: stalls
    of up to 300 ms every 30 s under 320 POSTs a second). A mismatch is re-checked in the request path,
    so a repaired database is served at once.
    """

    def __init__(self, pool: DictPool, interval: float) -> None:
        self._pool = pool
        self._interval = interval
        self._report: SchemaReport | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()
        self._recheck: asyncio.Task[None] | None = None  # the re-check running beside the requests

    async def refresh(self) -> SchemaReport:
        async with self._lock:
            return await self._verify()

    async def _verify(self) -> SchemaReport:
        async with self._pool.connection() as conn:
            report = await verify_async(conn)
        if not report.ok and (self._report is None or self._report.ok):
            logger.error("DB_MISMATCH: %s", "; ".join(report.problems))
        self._report, self._checked_at = report, time.monotonic()
        return report

    def _stale(self) -> bool:
        return time.monotonic() - self._checked_at > self._interval

    async def current(self) -> SchemaReport:
        report = self._report
        if report is not None and not self._stale():
            return report
        if report is not None and report.ok:
            if self._recheck is None or self._recheck.done():
                # a context of its own: its lines are not the request's that happened to start it
                self._recheck = asyncio.create_task(
                    self._recheck_beside(), name="waypost-schema-recheck", context=contextvars.Context()
                )
            return report
        async with self._lock:  # requests that waited here find the check made: one check, not one each
            if self._report is not None and not self._stale():
                return self._report
            return await self._verify()

    async def _recheck_beside(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # the database away: requests say so themselves
            self._checked_at = time.monotonic()  # tried: the next try is an interval away, not a request
            logger.warning("schema re-check failed: %s", exc)

    async def aclose(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
            await asyncio.gather(self._recheck, return_exceptions=True)  # the caller's own cancel still raises


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
