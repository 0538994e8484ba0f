"""Database connections: one psycopg async pool per process, shared by our queries and procrastinate."""

from __future__ import annotations

import time
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from waypost.settings import Settings
from waypost.sql import query

# Detect half-open connections (network faults, a restarted server) within seconds rather than
# the kernel's two hours; procrastinate's LISTEN connection inherits these through the pool's conninfo.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


# psycopg_pool retries a lost connection with doubling sleeps for up to 5 minutes, and while such
# an attempt sleeps, a request that needs a connection does not start another: after a 60 s outage
# the next attempt could come a minute after the database is back. Giving up after this long lets
# the next request that waits try again at once.
RECONNECT_SECONDS = 2.0


class Pool(AsyncConnectionPool):
    """psycopg's pool, back at once after a database restart.

    psycopg_pool checks a connection when it hands it out, and after each dead one it sleeps 1, 2,
    4, 8... seconds before trying the next: after a restart in a quiet spell, 2 idle connections
    cost a second and 6 reach the 30 s timeout. Here the first dead connection means the server went
    away: every idle connection is checked at once (the dead ones are replaced), with no sleep.
    """

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (its signature)
        """With `wait`, until the database answers or `timeout`: the first connections give up after
        RECONNECT_SECONDS, so keep asking (a waiting request makes the pool try again)."""
        await super().open(wait=False)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with self.connection(timeout=max(min(deadline - time.monotonic(), RECONNECT_SECONDS), 0.001)):
                    return
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise

    async def getconn(self, timeout: float | None = None) -> AsyncConnection[Any]:  # noqa: ASYNC109 (its signature)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            conn = await super().getconn(max(deadline - time.monotonic(), 0.001))
            try:
                await self.check_connection(conn)
            except Exception:
                await self.putconn(conn)  # a closed connection is discarded, and replaced
                await self.check()
                continue
            except BaseException:  # cancelled during the check: give the connection back all the same
                await self.putconn(conn)
                raise
            return conn


def pool_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for the pool (also used by procrastinate's connector)."""
    return {
        "conninfo": settings.require_database_url(),
        "min_size": settings.db_pool_min_size,
        "max_size": settings.db_pool_max_size,
        "timeout": settings.db_pool_timeout,
        "reconnect_timeout": RECONNECT_SECONDS,
        # No autocommit here: procrastinate adds its own for the LISTEN connection. A pool block
        # commits on exit, and conn.transaction() scopes anything that must be atomic.
        "kwargs": {**KEEPALIVES, "row_factory": dict_row},
        # no `check`: Pool.getconn checks, without psycopg_pool's backoff between dead connections
    }


def create_pool(settings: Settings, name: str = "waypost") -> Pool:
    """An unopened pool; open it with `await pool.open(wait=True)` or `async with`."""
    return Pool(**pool_kwargs(settings), name=name, open=False)


async def fetchone(conn: AsyncConnection[Any], name: str, **params: Any) -> dict[str, Any] | None:
    """Run the named query and return its first row (a dict), if any."""
    cursor = await conn.execute(query(name), params)
    return await cursor.fetchone()  # type: ignore[no-any-return]
