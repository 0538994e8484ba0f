"""Group commit for the common webhook: POSTs that come while every webhook statement of this web
process is busy wait for the next one, and are stored together in one statement and one commit.

At most WAYPOST_WEBHOOK_STATEMENTS webhook statements run at once. A POST that finds one free runs its
own at once, as before, so a quiet number pays nothing. One that finds them all busy waits, and when a
statement ends, the next one stores everything waiting (up to MAX_GROUP webhooks) with
waypost_store_webhooks_v1, which stores each exactly as waypost_store_webhook_v3 stores one. Each POST
is answered only after that commit. Under load the group shares one round trip, one commit and the
statement's fixed cost: a status webhook cost about 0.55 ms of PostgreSQL's CPU on its own and 0.3 in
groups of 10 (issue 17; three status webhooks come back for every reply).

A group that fails is stored again one webhook at a time, so that each gets its own outcome: an item
the database refuses fails only its own webhook, which the caller then takes through the general path.
A database that is away fails them all at once (each would wait for the pool's timeout in turn).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from waypost import metrics
from waypost.db import DictPool, Row, autocommit, fetch_all, fetch_one
from worker.tasks import REPLY_QUEUE, SEND_REPLY

logger = logging.getLogger(__name__)

# A deadlocked statement is run this often in all, after a short pause: nothing of it was written.
DEADLOCK_ATTEMPTS = 5
# The most webhooks one statement stores: a burst beyond it goes in several, one after the other.
MAX_GROUP = 64

# One webhook's arguments of the `store_webhook` query, but those every webhook shares.
Event = dict[str, Any]
# Where a webhook goes in its group: groups that run at once lock their rows in one order.
Order = tuple[int, tuple[str, str, str, float]]
# A webhook waiting for a statement: its order, its arguments, and its POST waiting for the outcome.
Waiting = tuple[Order, Event, "asyncio.Future[Row]"]


class GroupCommit:
    """The web process's webhook statements: `await store(event, order)` is one webhook's result row."""

    def __init__(self, pool: DictPool, window: tuple[float, float], statements: int) -> None:
        self._pool = pool
        self._shared = {
            "quiet_seconds": window[0],
            "max_wait_seconds": window[1],
            "reply_task": SEND_REPLY,
            "reply_queue": REPLY_QUEUE,
        }
        self._free = statements
        self._waiting: collections.deque[Waiting] = collections.deque()
        self._groups: set[asyncio.Task[None]] = set()  # held, so that a running group is never collected

    @property
    def waiting(self) -> int:
        """Webhooks waiting for a statement."""
        return len(self._waiting)

    async def store(self, event: Event, order: Order) -> Row:
        """Store one webhook; raises what the database raised for it (nothing of it is written then)."""
        if self._free and not self._waiting:
            self._free -= 1
            try:
                return await self._alone(event)
            finally:
                self._next()
        future: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self._waiting.append((order, event, future))
        return await future

    def _next(self) -> None:
        """A statement ended: its slot stores whatever waits, or is free again."""
        if not self._waiting:
            self._free += 1
            return
        group = [self._waiting.popleft() for _ in range(min(MAX_GROUP, len(self._waiting)))]
        task = asyncio.get_running_loop().create_task(self._group(group))
        self._groups.add(task)
        task.add_done_callback(self._groups.discard)

    async def _group(self, group: list[Waiting]) -> None:
        try:
            # a POST that went away while it waited (its connection closed) is not stored
            waiting = sorted((entry for entry in group if not entry[2].done()), key=lambda entry: entry[0])
            if len(waiting) == 1:
                await _settle(waiting[0][2], self._alone(waiting[0][1]))
            elif waiting:
                await self._together(waiting)
        except asyncio.CancelledError:  # the app stops: no POST of the group is left waiting for nothing
            for _, _, future in group:
                future.cancel()
            raise
        finally:
            self._next()

    async def _together(self, group: list[Waiting]) -> None:
        events = [event for _, event, _ in group]
        try:
            rows = await self._attempts(events, lambda conn: _store_group(conn, events, self._shared))
        except psycopg.OperationalError as exc:  # the database is away: every POST answers 503 now
            for _, _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception as exc:
            reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            logger.warning("webhook group of %s refused (%s); storing each on its own", len(group), reason)
            for _, event, future in group:
                await _settle(future, self._alone(event))
            return
        for (_, _, future), row in zip(group, rows, strict=True):
            if not future.done():
                future.set_result(row)

    async def warm(self, conn: Any, events: list[Event]) -> list[Row]:
        """Both webhook statements on `conn`, in the caller's transaction (webhook/warmup.py): the
        first event alone, the others as a group. Each event's row."""
        first = await fetch_one(conn, "store_webhook", **events[0], **self._shared)
        return [first, *await _store_group(conn, events[1:], self._shared)]

    async def _alone(self, event: Event) -> Row:
        return await self._attempts([event], lambda conn: fetch_one(conn, "store_webhook", **event, **self._shared))

    async def _attempts(self, events: list[Event], run: Callable[[Any], Awaitable[Any]]) -> Any:
        metrics.WEBHOOK_GROUP_SIZE.observe(len(events))
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                async with autocommit(self._pool) as conn:  # one statement is one transaction
                    return await run(conn)
            except psycopg.errors.DeadlockDetected:
                # A status and the worker's record of its send meet on the same rows (bench.mixed saw a
                # few a minute at 240 statuses/s): PostgreSQL undid this whole statement, so it is run
                # again (the other one first) rather than answered 503 for Meta to deliver again.
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                request_ids = ",".join(event["request_id"] for event in events)
                logger.info(
                    "webhook statement chosen as a deadlock victim (attempt %s, request ids %s); running it again",
                    attempt,
                    request_ids,
                )
                await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)  # the other transaction finishes first
        raise AssertionError("unreachable")


async def _store_group(conn: Any, events: list[Event], shared: dict[str, Any]) -> list[Row]:
    rows = await fetch_all(
        conn,
        "store_webhooks",
        request_ids=[event["request_id"] for event in events],
        bodies=[event["body"] for event in events],
        body_sha256s=[event["body_sha256"] for event in events],
        signatures=[event["signature"] for event in events],
        messages=[event["messages"] for event in events],
        statuses=[event["statuses"] for event in events],
        **shared,
    )
    assert [row["event_number"] for row in rows] == list(range(1, len(events) + 1)), "one row per webhook, in order"
    return rows


async def _settle(future: asyncio.Future[Row], outcome: Awaitable[Row]) -> None:
    """The outcome, or the exception, for the POST waiting on `future` (if it still waits)."""
    try:
        row = await outcome
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(row)
