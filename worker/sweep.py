"""The sweep: puts stuck work back in motion and drops old rows. Run every minute by a procrastinate
periodic task (worker.queue, with the App's job manager), and on demand by the cron endpoint
(worker.tasks.sweep_now). Safe when several run at once."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from procrastinate.exceptions import ConnectorException
from procrastinate.manager import JobManager
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from waypost.db import execute, fetch_all, fetch_one, fetch_value
from waypost.media_store import MediaStore
from waypost.metrics import UNDELIVERED
from waypost.settings import Settings
from worker.media_ready import sweep_stuck_media
from worker.tasks import defer_operator_send, defer_reply, defer_template_submission
from worker.template_sync import sync_if_due
from worker.turns import release_due

logger = logging.getLogger(__name__)

# A webhook commits its job row and its queue row together, so a younger job is never orphaned;
# the margin only spares rows a worker is closing at this very moment.
MIN_AGE_SECONDS = 5.0
# A file written for a message that was never queued (its web process died between the two): removed
# after this long, far past any upload still on its way to being queued
STAGED_MEDIA_SECONDS = 3600.0
# A turn's quiet window over this long ago: no worker's turn clock queued it (none is running, or its
# LISTEN connection is away), so the sweep does
OVERDUE_TURN_SECONDS = 1.0
# The journal's daily partitions are made this many days ahead: a sweep may stop that long before a
# row lands in the default partition (still stored, moved to its day when the partition is made)
JOURNAL_DAYS_AHEAD = 3


@dataclasses.dataclass
class SweepReport:
    stalled_jobs_retried: int = 0
    outbound_jobs_redeferred: int = 0
    outbound_jobs_failed: int = 0
    turns_released: int = 0
    operator_messages_redeferred: int = 0
    operator_messages_failed: int = 0
    webhook_events_deleted: int = 0  # journal rows deleted one by one (default and legacy partitions)
    webhook_partitions_dropped: int = 0  # journal days dropped whole, their rows uncounted (a count would scan them)
    media_purged: int = 0
    media_requeued: int = 0
    media_given_up: int = 0
    undelivered_flagged: int = 0
    staged_media_removed: int = 0
    template_drafts_redeferred: int = 0
    handed_back: int = 0  # handed-over conversations back to the AI (WAYPOST_HANDBACK_AFTER_SECONDS)
    templates_synced: int = 0  # templates read by this sweep's scheduled sync (worker/template_sync.py)
    template_sync_failed: int = 0  # 1 when that sync failed: the next sweep tries again
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


async def sweep(
    pool: AsyncConnectionPool[Any], settings: Settings, manager: JobManager, media_store: MediaStore
) -> SweepReport:
    """`manager` runs procrastinate's own queries (stalled jobs, retention) on `pool` too; old files'
    bytes go from `media_store` (their chunks or their S3 objects)."""
    started = time.perf_counter()
    report = SweepReport()

    # 1. Jobs left 'doing' by a worker whose heartbeat stopped: procrastinate leaves them to us.
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=settings.stalled_worker_seconds):
        try:
            await manager.retry_job(job)
        except ConnectorException:  # another sweep retried it first
            continue
        report.stalled_jobs_retried += 1
        logger.warning("sweep: retried stalled procrastinate job %s (%s)", job.id, job.task_name)

    # 2. Open outbound jobs with no live procrastinate job: re-defer, within their attempt budget.
    # Sends in flight, or awaiting a status within the grace period, are left alone.
    orphan_params = {
        "min_age": MIN_AGE_SECONDS,
        "stale_after": settings.sending_stale_after,
        "grace": settings.unknown_grace_seconds,
    }
    async with pool.connection() as conn, conn.transaction():
        for outbound in await fetch_all(conn, "sweep_orphan_outbound_jobs", **orphan_params):
            if outbound["attempts"] >= settings.reply_max_attempts:
                reason = (
                    f"gave up after {outbound['attempts']} attempt(s); "
                    f"see the worker log for request {outbound['request_id']}"
                )
                await execute(conn, "outbound_job_give_up", outbound_job_id=outbound["id"], reason=reason)
                report.outbound_jobs_failed += 1
                continue
            procrastinate_job_id = await defer_reply(
                conn,
                outbound_job_id=outbound["id"],
                conversation_id=outbound["conversation_id"],
                request_id=outbound["request_id"],
            )
            report.outbound_jobs_redeferred += 1
            logger.warning(
                "sweep: re-deferred outbound job %s as procrastinate job %s (request_id=%s)",
                outbound["id"],
                procrastinate_job_id,
                outbound["request_id"],
            )

    # 2a. Turns whose quiet window is over and whose reply no turn clock queued (worker.turns).
    async with pool.connection() as conn, conn.transaction():
        report.turns_released = await release_due(conn, OVERDUE_TURN_SECONDS)
    if report.turns_released:
        logger.warning("sweep: queued the replies of %s overdue turn(s)", report.turns_released)

    # 2b. Downloads and transcriptions whose job was lost: queued again, or given up once out of
    # attempts (which wakes the replies waiting for them): no reply waits for a file forever.
    async with pool.connection() as conn, conn.transaction():
        report.media_requeued, report.media_given_up = await sweep_stuck_media(conn, settings, MIN_AGE_SECONDS)

    # 3. Operator messages whose send job was lost (or whose outcome stayed unknown past the grace).
    async with pool.connection() as conn, conn.transaction():
        for message in await fetch_all(conn, "sweep_orphan_operator_messages", **orphan_params):
            if message["send_attempts"] >= settings.reply_max_attempts:
                reason = f"gave up after {message['send_attempts']} send attempt(s)"
                errors = Jsonb([{"title": "Waypost gave up", "message": reason}])
                await execute(conn, "fail_send", message_id=message["id"], errors=errors, reason=reason)
                report.operator_messages_failed += 1
                continue
            await defer_operator_send(
                conn,
                message_id=message["id"],
                conversation_id=message["conversation_id"],
                request_id=f"sweep-{message['id']}",
            )
            report.operator_messages_redeferred += 1
            logger.warning("sweep: re-deferred the send of operator message %s", message["id"])

    # 3a. Template drafts whose submit job was lost: queued again, never left "submitting".
    async with pool.connection() as conn, conn.transaction():
        for draft in await fetch_all(conn, "sweep_orphan_template_drafts", min_age=MIN_AGE_SECONDS):
            request_id = draft["request_id"] or f"sweep-draft-{draft['id']}"
            await defer_template_submission(conn, draft_id=draft["id"], request_id=request_id)
            report.template_drafts_redeferred += 1
            logger.warning("sweep: re-deferred the submission of template draft %s", draft["id"])

    # 3b. Accepted by Meta but never delivered: flagged and notified once, never silent.
    async with pool.connection() as conn:
        flagged = await fetch_value(conn, "sweep_flag_undelivered", after=settings.undelivered_after_seconds)
        report.undelivered_flagged = int(flagged or 0)
    if report.undelivered_flagged:
        UNDELIVERED.inc(report.undelivered_flagged)
        logger.warning("sweep: %s message(s) accepted but not delivered", report.undelivered_flagged)

    # 3c. Handed-over conversations no operator answered for WAYPOST_HANDBACK_AFTER_SECONDS: back to
    # the AI, each once, with a `handed_back` notification (README "Handing over").
    if settings.handback_after_seconds:
        async with pool.connection() as conn:
            back = await fetch_value(conn, "sweep_hand_back", after=settings.handback_after_seconds)
            report.handed_back = int(back or 0)
        if report.handed_back:
            logger.info("sweep: %s handed-over conversation(s) back to the AI", report.handed_back)

    # 4. Retention.
    hours = max(1, round(settings.retention_days * 24))
    await manager.delete_old_jobs(nb_hours=hours, include_failed=True, include_cancelled=True, include_aborted=True)
    seconds = settings.retention_days * 86400
    async with pool.connection() as conn:
        await execute(conn, "sweep_delete_old_sign_in_attempts")
        await execute(conn, "sweep_delete_old_operator_sessions", seconds=seconds)
    # A transaction of its own, committed at once: attaching or dropping a day's partition holds a lock
    # the webhook's inserts wait for, until this commits.
    async with pool.connection() as conn:
        journal = await fetch_one(conn, "sweep_journal_partitions", seconds=seconds, days_ahead=JOURNAL_DAYS_AHEAD)
        report.webhook_events_deleted = int(journal["rows_deleted"])
        report.webhook_partitions_dropped = int(journal["partitions_dropped"])
    report.media_purged = await media_store.purge_old(pool, settings.media_retention_days * 86400)
    report.staged_media_removed = await media_store.purge_staged(pool, STAGED_MEDIA_SECONDS)

    # 5. The account's message templates, on their schedule; a failure is reported, never raised.
    scheduled = await sync_if_due(pool, settings)
    report.templates_synced, report.template_sync_failed = scheduled.listed, int(scheduled.failed)
    report.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info("sweep done: %s", report.as_dict())
    return report
