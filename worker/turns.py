"""Turns (README "Turns"): the inbound messages of one conversation that one reply answers.

With a quiet window (WAYPOST_TURN_QUIET_SECONDS), the webhook stores a message in its conversation's
open turn, or starts one that is 'gathering' until its window is over; no job is queued yet (SQL:
waypost_ingest_inbound_message_v5). Every worker runs a turn clock: it sleeps until the next turn is
due, or until a new turn is announced on the `waypost_turns` channel (the worker's LISTEN connection,
worker.resilience), and then queues the replies of the due turns in the transaction that releases
them, so two clocks queue each once. The sweep releases what no clock did (a worker down).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from waypost.db import DictPool, autocommit, fetch_all, fetch_optional, fetch_value
from waypost.listen import backoff
from waypost.logs import log_context
from worker.rows import Inbound
from worker.tasks import idempotency_key, requeue_reply

if TYPE_CHECKING:
    from worker.sending import Outbound

logger = logging.getLogger(__name__)

CHANNEL = "waypost_turns"
# A clock with nothing gathering still looks this often: a lost NOTIFY costs at most this much.
IDLE_SECONDS = 30.0
# Never spin: a turn being joined at this instant (row locked) is skipped, and taken this much later.
MIN_SLEEP_SECONDS = 0.01


@dataclasses.dataclass(frozen=True)
class TurnMessages:
    """The inbound messages one reply answers, oldest first, as its run read them."""

    messages: tuple[Inbound, ...]
    last_id: int  # the job's last_message_id when read: the claim checks no message joined since

    @property
    def first(self) -> Inbound:
        """The turn's first message: the reply's key and its link (reply_to_message_id) are this one's."""
        return self.messages[0]

    @property
    def key(self) -> str:
        """The reply's idempotency key: the first message's (worker.tasks.idempotency_key)."""
        return idempotency_key(self.first.wa_message_id)

    @property
    def live(self) -> tuple[Inbound, ...]:
        """The messages the contact has not deleted for everyone."""
        return tuple(m for m in self.messages if m.revoked_at is None)

    @property
    def latest(self) -> Inbound:
        """The newest message the AI answers (the newest of all when every one was deleted)."""
        return (self.live or self.messages)[-1]

    def addressed(self, outbound: Outbound) -> Outbound:
        """The reply as sent: linked to the turn's first message; a reply to several quotes none."""
        if outbound.reply_to is None or len(self.messages) == 1:
            return outbound
        return dataclasses.replace(outbound, reply_to=self.first, quote=False)


NO_TURN = TurnMessages((), 0)


async def regather(conn: AsyncConnection[Any], outbound_job_id: int, *, unless_due: bool) -> bool:
    """Put a running turn back to gathering (with `unless_due`, only while its quiet window is open);
    the turn clock queues its reply again. Whether it did."""
    row = await fetch_optional(conn, "turn_regather", outbound_job_id=outbound_job_id, unless_due=unless_due)
    return row is not None


async def close(pool: DictPool, outbound_job_id: int, last_id: int) -> bool:
    """Close the turn before its reply is claimed (`turn_close`: its own transaction); False when a
    message joined since the run read it (newest no longer `last_id`): the caller has it gather again
    (`joined`)."""
    async with autocommit(pool) as conn:
        return (
            await fetch_optional(conn, "turn_close", outbound_job_id=outbound_job_id, last_message_id=last_id)
            is not None
        )


async def joined(pool: DictPool, outbound_job_id: int) -> None:
    """A message joined the turn since its run read it: the turn gathers again."""
    async with pool.connection() as conn:  # its own transaction (worker.tasks.requeue_reply says why)
        await regather(conn, outbound_job_id, unless_due=False)


async def release_due(conn: AsyncConnection[Any], min_age: float = 0.0) -> int:
    """In the caller's transaction: the turns due (for `min_age` seconds) become pending jobs, queued."""
    due = await fetch_all(conn, "turns_due", min_age=min_age)
    for turn in due:
        job_id = await requeue_reply(conn, turn, "turn_release")
        with log_context(request_id=turn["request_id"], job_id=job_id):  # the first message's request
            logger.info("turn %s due: its reply queued", turn["id"])
    return len(due)


class TurnClock:
    """Queues each turn's reply when its quiet window is over. `wake()` when a turn may have become
    due earlier than the clock thought (a NOTIFY on CHANNEL, a reconnected LISTEN)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()  # before the query: a NOTIFY that arrives during it is kept
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    await release_due(conn)
                async with self.pool.connection() as conn:
                    seconds = await fetch_value(conn, "turns_next_due")
            except Exception as exc:  # the clock never dies: the next pass retries
                if failures == 0:
                    logger.warning("turn clock: %s; retrying", exc)
                failures += 1
                await asyncio.sleep(backoff(failures))
                continue
            failures = 0
            sleep = IDLE_SECONDS if seconds is None else min(max(seconds, MIN_SLEEP_SECONDS), IDLE_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sleep)
