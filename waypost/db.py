"""Database connections: one psycopg async pool per process, shared by our queries and procrastinate."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

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


def pool_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for an AsyncConnectionPool (also used by procrastinate's connector)."""
    return {
        "conninfo": settings.require_database_url(),
        "min_size": settings.db_pool_min_size,
        "max_size": settings.db_pool_max_size,
        # No autocommit here: procrastinate adds its own for the LISTEN connection. A pool block
        # commits on exit, and conn.transaction() scopes anything that must be atomic.
        "kwargs": {**KEEPALIVES, "row_factory": dict_row},
        "check": AsyncConnectionPool.check_connection,
    }


def create_pool(settings: Settings, name: str = "waypost") -> AsyncConnectionPool:
    """An unopened pool; open it with `await pool.open(wait=True)` or `async with`."""
    return AsyncConnectionPool(**pool_kwargs(settings), name=name, open=False)


async def fetchone(conn: AsyncConnection[Any], name: str, **params: Any) -> dict[str, Any] | None:
    """Run the named query and return its first row (a dict), if any."""
    cursor = await conn.execute(query(name), params)
    return await cursor.fetchone()  # type: ignore[no-any-return]
