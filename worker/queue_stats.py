"""procrastinate's fetch planned on the statistics of a drained queue (issue 17).

PostgreSQL's statistics of `procrastinate_jobs`, and the row counts of its partial indexes, are taken by
autovacuum whenever enough rows changed: often just after the queue drained, with no job due. Planned
on those, procrastinate's fetch (`procrastinate_fetch_job_v2`) checks a candidate's `lock` by reading
every due job instead of looking the lock up, for each candidate it skips because its conversation
has a reply running: when a burst of replies comes after a quiet spell, each fetch cost 4 to 11 ms
instead of 0.5, and the worker answered 20 to 55 replies a second instead of about 110
(`bench.suite`'s sustained phase, about one run in three) until autovacuum analyzed the table again,
up to a minute later. procrastinate's issue #1242 tracks the fetch's cost upstream.

While due jobs wait, the worker compares, at most every CHECK_SECONDS, the number due with what the
planner believes (the `todo` partial index's row count); far more than it believes, and it analyzes
the table itself: a few tens of milliseconds, and the fetch is planned again on the real numbers. Far
fewer, as after a burst drained, too: statistics taken mid-burst plan the fetch for a long queue.
"""

from __future__ import annotations

import logging
import time

from procrastinate.connector import BaseConnector

from waypost.sql import query

logger = logging.getLogger(__name__)

# How often, at most, a worker with a backlog compares the due jobs with the planner's belief.
CHECK_SECONDS = 1.0
# Stale: at least this many jobs due, and more than RATIO times the planner's count.
MIN_DUE = 50
RATIO = 4.0


class QueueStatistics:
    def __init__(self) -> None:
        self.checked_at = float("-inf")
        self.refused = False  # ANALYZE was refused (privileges): not asked again

    def due(self) -> bool:
        """Time for a check (the caller saw a backlog)."""
        return not self.refused and time.monotonic() - self.checked_at >= CHECK_SECONDS

    async def check(self, connector: BaseConnector) -> bool:
        """Analyze procrastinate_jobs when its statistics are stale; True when it did. Errors are
        logged, never raised: this only speeds the fetch up."""
        self.checked_at = time.monotonic()
        try:
            due, believed = await _counts(connector)
            if not _stale(due, believed):
                return False
            await connector.execute_query_async(query=query("queue_analyze"))
            due_now, after = await _counts(connector)
        except Exception as exc:  # never worth failing the fetch loop over
            logger.warning("procrastinate_jobs statistics not refreshed: %s", exc)
            return False
        if _stale(due_now, after):  # ANALYZE skips a table the role may not maintain, with a mere warning
            self.refused = True
            logger.warning(
                "procrastinate_jobs statistics not refreshed: ANALYZE changed nothing (does the worker's role "
                "own the table?); a burst after a quiet spell may be fetched slowly until autovacuum analyzes it"
            )
            return False
        logger.info(
            "procrastinate_jobs analyzed: %s jobs due where its statistics counted %.0f (the fetch is planned again)",
            due,
            believed,
        )
        return True


async def _counts(connector: BaseConnector) -> tuple[int, float]:
    row = await connector.execute_query_one_async(query=query("queue_statistics"), limit=MIN_DUE * 100)
    return int(row["due"]), float(row["believed"])


def _stale(due: int, believed: float) -> bool:
    """Far off either way: far more jobs due than believed (the trap), or far fewer, as after a burst
    drained (the statistics the check took mid-burst then plan the fetch for a long queue: 1.6 ms a
    fetch instead of 0.7 at 50 replies a second)."""
    if believed < 0:  # never analyzed nor vacuumed: the planner assumes a table of some size
        return False
    return max(due, believed) >= MIN_DUE and (due > RATIO * max(believed, 1.0) or believed > RATIO * max(due, 1))
