"""Database connections and the one door to run a named query.

One psycopg async pool per process, shared by our queries and procrastinate. Every query runs through
the verbs below, by name (`sql/*.sql`) with keyword parameters; the verb says how many rows the caller
expects: `execute` (none, returns the row count), `fetch_all`, `fetch_optional` (a row or None),
`fetch_one` (a row that must exist: MissingRow otherwise, never None) and `fetch_value`. `fetch_one`
and `fetch_optional` take a dataclass as third argument to build a typed row (psycopg's `class_row`).
The `_sync` twins serve the synchronous CLI paths (`waypost status`, operators, metrics scrapes).
"""

from __future__ import annotations

import contextlib
import functools
import re
import select
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, overload

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, class_row, dict_row
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


Row = dict[str, Any]
DictConnection = AsyncConnection[DictRow]
DictPool = AsyncConnectionPool[DictConnection]  # what every pool here is: rows come back as dicts
T = TypeVar("T")
C = TypeVar("C", bound=AsyncConnection[Any])


class MissingRow(LookupError):
    """A query whose row must exist returned none: a broken invariant, not a user's mistake."""

    def __init__(self, name: str) -> None:
        super().__init__(f"query {name!r} returned no row")
        self.name = name


class Pool(AsyncConnectionPool[DictConnection]):
    """psycopg's pool, back at once after a database restart.

    psycopg_pool checks a connection when it hands it out, and after each dead one it sleeps 1, 2,
    4, 8... seconds before trying the next: after a restart in a quiet spell, 2 idle connections
    cost a second and 6 reach the 30 s timeout. Here the first dead connection means the server went
    away: every idle connection is checked at once (the dead ones are replaced), with no sleep.

    A connection given back less than QUIET_SECONDS ago is checked without a round trip when its
    socket says nothing happened: it has nothing to read unless the server went away (its goodbye
    message or the socket's end) or sent what nobody asked for. Under load every checkout is such a
    one, and skipping the round trip saves about a third of a millisecond each (issue 17). One idle
    longer is checked by a round trip, as before: a server host that vanished without a word (a
    failover) answers that with a reset, and the connection is replaced unseen.
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

    # when each connection came back: only one back within QUIET_SECONDS skips the check
    _returned: weakref.WeakKeyDictionary[DictConnection, float]
    # awaited on each connection the pool opens, before it is handed out (waypost.warmup sets it)
    on_connect: Callable[[DictConnection], Awaitable[None]] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "configure" in kwargs:
            raise TypeError("Pool configures its own connections: set on_connect")
        super().__init__(*args, configure=self._configure_new, **kwargs)
        self._returned = weakref.WeakKeyDictionary()
        self.on_connect = None

    async def _configure_new(self, conn: DictConnection) -> None:
        """psycopg_pool's `configure`."""
        if self.on_connect is not None:
            await self.on_connect(conn)

    async def putconn(self, conn: DictConnection) -> None:
        self._returned[conn] = time.monotonic()
        await super().putconn(conn)

    async def getconn(self, timeout: float | None = None) -> DictConnection:  # noqa: ASYNC109 (its signature)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            conn = await super().getconn(max(deadline - time.monotonic(), 0.001))
            if time.monotonic() - self._returned.get(conn, -QUIET_SECONDS) < QUIET_SECONDS and _quiet(conn):
                return conn
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


# Well under KEEPALIVES' keepalives_idle: within it, a vanished server's silence is not yet news.
QUIET_SECONDS = 2.0


def _quiet(conn: DictConnection) -> bool:
    """Idle, not known broken, and nothing waiting on its socket."""
    if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


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


@contextlib.asynccontextmanager
async def autocommit(pool: AsyncConnectionPool[C]) -> AsyncIterator[C]:
    """A pooled connection in autocommit, for statements that each stand alone: each commits as it
    ends. A plain pool block wraps its statements in BEGIN and COMMIT, two round trips more, and about
    0.3 ms of client CPU and 0.1 ms of the server's for a one-statement block (issue 17). What must be
    atomic still takes `conn.transaction()`, which works here too."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            # A broken or cancelled connection is not idle: the pool discards it, and the error
            # raised in the block is the one the caller must see
            if conn.info.transaction_status == TransactionStatus.IDLE:
                await conn.set_autocommit(False)


_PLACEHOLDER = re.compile(r"%\((\w+)\)[sbt]")  # psycopg's any, binary and text formats


@functools.cache
def _placeholders(name: str) -> frozenset[str]:
    return frozenset(_PLACEHOLDER.findall(query(name)))


def composed(name: str, /, **identifiers: str) -> sql.Composed:
    """A named statement whose {placeholders} are identifiers (a channel, a database), quoted as
    such by psycopg.sql: the only SQL that cannot take them as parameters."""
    return sql.SQL(query(name)).format(**{key: sql.Identifier(value) for key, value in identifiers.items()})


def _statement(name: str, params: dict[str, Any]) -> str:
    """The named query's text, once its parameters are checked: a misspelt one fails here, by name,
    instead of being ignored (psycopg only reports the missing ones)."""
    unused = params.keys() - _placeholders(name)
    if unused:
        raise TypeError(f"query {name!r} takes no parameter(s) {sorted(unused)}")
    return query(name)


async def execute(conn: AsyncConnection[Any], name: str, /, **params: Any) -> int:
    """Run the named statement; the number of rows it touched."""
    cursor = await conn.execute(_statement(name, params), params)
    return cursor.rowcount


async def fetch_all(conn: AsyncConnection[Any], name: str, /, **params: Any) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_statement(name, params), params)
        return await cursor.fetchall()


async def _first(conn: AsyncConnection[Any], name: str, row: type[Any] | None, params: dict[str, Any]) -> Any:
    async with conn.cursor(row_factory=dict_row if row is None else class_row(row)) as cursor:
        await cursor.execute(_statement(name, params), params)
        return await cursor.fetchone()


@overload
async def fetch_optional(conn: AsyncConnection[Any], name: str, /, **params: Any) -> Row | None: ...
@overload
async def fetch_optional(conn: AsyncConnection[Any], name: str, row: type[T], /, **params: Any) -> T | None: ...
async def fetch_optional(conn: AsyncConnection[Any], name: str, row: type[Any] | None = None, /, **params: Any) -> Any:
    """The first row, or None when there is none."""
    return await _first(conn, name, row, params)


@overload
async def fetch_one(conn: AsyncConnection[Any], name: str, /, **params: Any) -> Row: ...
@overload
async def fetch_one(conn: AsyncConnection[Any], name: str, row: type[T], /, **params: Any) -> T: ...
async def fetch_one(conn: AsyncConnection[Any], name: str, row: type[Any] | None = None, /, **params: Any) -> Any:
    """The first row of a query that always returns one (RETURNING, a function call, a count)."""
    found = await _first(conn, name, row, params)
    if found is None:
        raise MissingRow(name)
    return found


async def fetch_value(conn: AsyncConnection[Any], name: str, /, **params: Any) -> Any:
    """The first column of the query's one row."""
    return next(iter((await fetch_one(conn, name, **params)).values()))


def connect_sync(
    database_url: str, *, autocommit: bool = False, connect_timeout: int | None = None
) -> psycopg.Connection[DictRow]:
    """A short-lived synchronous connection for the CLI and metrics scrapes (they hold no pool)."""
    return psycopg.connect(database_url, autocommit=autocommit, row_factory=dict_row, connect_timeout=connect_timeout)


def execute_sync(conn: psycopg.Connection[Any], name: str, /, **params: Any) -> int:
    return conn.execute(_statement(name, params), params).rowcount


def fetch_all_sync(conn: psycopg.Connection[Any], name: str, /, **params: Any) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(_statement(name, params), params).fetchall()


def fetch_optional_sync(conn: psycopg.Connection[Any], name: str, /, **params: Any) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(_statement(name, params), params).fetchone()


def fetch_one_sync(conn: psycopg.Connection[Any], name: str, /, **params: Any) -> Row:
    found = fetch_optional_sync(conn, name, **params)
    if found is None:
        raise MissingRow(name)
    return found
