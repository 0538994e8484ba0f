"""Warm connections (issue 17): a new PostgreSQL session compiles each PL/pgSQL function, plans its
statements and loads the catalog entries of each table the first time it meets them, 10-20 ms more on its
first statements. So each process runs its hot path's statements on made-up rows (webhook/warmup.py,
worker/warmup.py say which), in a transaction rolled back, on its pool's connections: at start, before it
takes any work, and then on each connection its pool opens later (growing, or replacing one past
psycopg_pool's max_lifetime), before it is handed out. A connection opened while a request waits for one is
handed out at once, cold, as without a warm-up: waiting for the warm-up would cost that request more than
the cold statements do. Nothing is written or notified (a rolled-back transaction sends no NOTIFY); only
sequence values are used up. A warm-up never waits more than WARM_UP_LOCK_SECONDS for a lock, and never
raises: a failure is logged, and the connection serves unwarmed. One that fails at start is not tried
again on the connections opened later.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable

from psycopg.pq import TransactionStatus

from waypost.db import DictConnection, Pool, execute

# The start's bound: a locked table or a slow database delays a start by no more.
WARM_UP_SECONDS = 10.0
# A connection opened later: held back from the pool by its warm-up no longer.
NEW_CONNECTION_SECONDS = 2.0
# The longest a warm-up's statement waits for a lock: a lock it does not need (a migration holding the
# journal's) would hold a new connection back.
WARM_UP_LOCK_SECONDS = 1.0
# The phone number id of the warm-ups' made-up rows: no business's (Meta's ids are long numbers), so the
# rows a warm-up touches are its own, never a real contact's.
WARM_UP_PHONE_NUMBER_ID = "0"

Run = Callable[[DictConnection], Awaitable[object]]


class Warmer:
    """The pool's `on_connect`: warms each connection the pool opens, unless a request waits for one."""

    def __init__(self, pool: Pool, run: Run, log: logging.Logger) -> None:
        self.pool, self.run, self.log = pool, run, log
        self.warmed: weakref.WeakSet[DictConnection] = weakref.WeakSet()
        self.starting = True  # warm_up's own wait for a connection is no request's

    async def __call__(self, conn: DictConnection) -> None:
        if self.pool.closed or (not self.starting and self.pool.get_stats().get("requests_waiting", 0)):
            return  # handed out at once, cold
        started = time.perf_counter()
        try:
            async with asyncio.timeout(NEW_CONNECTION_SECONDS):
                await self.warm(conn)
        except Exception as exc:
            self.log.warning("warm-up of a new database connection given up: %r", exc)
        except BaseException:  # cancelled (the pool closes): the connection goes with it
            await conn.close()
            raise
        else:
            self.log.info(
                "warmed a new database connection (backend %s) in %.0f ms",
                conn.info.backend_pid,
                (time.perf_counter() - started) * 1000,
            )
        if conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.close()  # left mid-rollback: the pool discards it, and opens another

    async def warm(self, conn: DictConnection) -> None:
        async with conn.transaction(force_rollback=True):
            await execute(conn, "warm_up_begin", lock_timeout=f"{WARM_UP_LOCK_SECONDS * 1000:.0f}ms")
            await self.run(conn)
            # the deferred foreign keys' checks too, which a rollback never reaches
            await execute(conn, "warm_up_check_constraints")
        self.warmed.add(conn)


async def warm_up(pool: Pool, connections: int, run: Run, log: logging.Logger) -> list[int]:
    """`run` on each of the pool's connections, at least `connections` of them (the pool opens more if it
    holds fewer), each in a transaction rolled back; from then on on each connection the pool opens (the
    module's docstring). The backend pids warm at the end. Never raises: a failure, or WARM_UP_SECONDS
    gone (and psycopg's cancel of the statement then running, a few seconds at most), is logged and the
    rest given up; the connections it did not warm pay on their first real statements."""
    warmer = Warmer(pool, run, log)
    pool.on_connect = warmer  # from now on: a connection still opening warms itself
    target = max(connections, pool.get_stats().get("pool_size", 0))  # and those opened before, here
    started, warmed, held = time.perf_counter(), [], []
    try:
        async with asyncio.timeout(WARM_UP_SECONDS):
            for _ in range(target):
                conn = await pool.getconn()
                held.append(conn)  # held until the end: the next one is another
                if conn not in warmer.warmed:
                    await warmer.warm(conn)
                warmed.append(conn.info.backend_pid)
    except Exception as exc:  # TimeoutError included: the start goes on, unwarmed
        pool.on_connect = None
        log.warning("warm-up of the database connections given up after %s of %s: %r", len(warmed), target, exc)
    finally:
        warmer.starting = False
        for conn in held:
            await pool.putconn(conn)
    log.info("warmed %s database connections in %.0f ms", len(warmed), (time.perf_counter() - started) * 1000)
    return warmed
