"""When a reply job runs again. The task decides whether a retry is still allowed (bounded in
attempts and in time since the message arrived) and how long to wait; procrastinate executes it."""

from __future__ import annotations

import datetime as dt
import random

from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job

from waypost.settings import Settings

MAX_DELAY_SECONDS = 300.0
PAIR_RATE_LIMIT = 131056  # Meta: retry after 4^X seconds


class RetryLater(Exception):
    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(f"{reason} (retry in {delay:.1f}s)")
        self.reason = reason
        self.delay = delay


class FollowTaskDecision(BaseRetryStrategy):
    """Retry exactly the RetryLater exceptions, after their delay; anything else fails the job."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RetryLater):
            # retry_at, not retry_in: procrastinate types retry_in's seconds as int, and delays are fractional
            return RetryDecision(retry_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=exception.delay))
        return None


def retry_delay(settings: Settings, attempt: int, retry_after: float | None = None, code: int | None = None) -> float:
    """Exponential backoff with jitter; Meta's Retry-After and 4^X pair-rate schedule win when given."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_DELAY_SECONDS)
    if code == PAIR_RATE_LIMIT:
        return min(4.0 ** (attempt - 1), MAX_DELAY_SECONDS)
    ceiling = min(settings.retry_base_seconds * 2 ** (attempt - 1), MAX_DELAY_SECONDS)
    return random.uniform(ceiling / 2, ceiling)


def may_retry(settings: Settings, attempts: int, first_seen: dt.datetime, delay: float) -> bool:
    """False once the attempts or the time budget (counted from the job's creation) are spent."""
    if attempts >= settings.reply_max_attempts:
        return False
    deadline = first_seen + dt.timedelta(seconds=settings.reply_max_retry_seconds)
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay) <= deadline
