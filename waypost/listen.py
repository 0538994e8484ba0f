"""A LISTEN connection that outlives its database: reconnects with backoff, proves itself alive
when quiet, and says when it is back. Used by the web app's inbox feed and by the worker's
wake-ups (in place of procrastinate's listener, which gives up after one failed reconnect)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import psycopg

from waypost.db import KEEPALIVES, composed, execute

# How long a quiet connection waits before proving it is alive.
PING_SECONDS = 15.0
# Waits between attempts to reach a database that is away: quick at first, then at most 2 s apart,
# so a connection is back within about 2 s of the database (the worker's retries use it too).
BACKOFF = (0.2, 0.5, 1.0, 2.0)


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1` (0-based)."""
    return BACKOFF[min(attempt, len(BACKOFF) - 1)]


async def listen_forever(
    conninfo: str,
    channels: Iterable[str],
    on_payload: Callable[[str, str], Awaitable[None] | None],
    on_connected: Callable[[bool], Awaitable[None] | None],
    logger: logging.Logger,
    name: str,
) -> None:
    """LISTEN on `channels` until cancelled. `on_payload(channel, payload)` gets each notification;
    `on_connected(again)` runs once LISTEN is in place, with again=True after a loss: whatever was
    announced meanwhile was missed, and the caller catches up."""
    failures = 0
    lost = False
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **KEEPALIVES) as conn:
                for channel in channels:
                    await conn.execute(composed("listen_channel", channel=channel))
                if lost:
                    logger.warning("%s: listening again after %s failed attempt(s)", name, failures)
                failures = 0
                await _call(on_connected(lost))
                lost = False
                while True:
                    async for notify in conn.notifies(timeout=PING_SECONDS):
                        await _call(on_payload(notify.channel, notify.payload))
                    await execute(conn, "listen_ping")
        except psycopg.OperationalError as exc:
            delay = backoff(failures)
            if not lost or failures == 0:
                logger.warning("%s: database connection lost (%s); retrying every %.1fs or less", name, exc, delay)
            lost = True
            failures += 1
            await asyncio.sleep(delay)


async def _call(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
