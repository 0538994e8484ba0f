"""The sweep: puts stuck work back in motion and drops old rows. Run every minute by a procrastinate
periodic task, and on demand by the cron endpoint. Safe when several run at once."""

from __future__ import annotations

import dataclasses
import logging
import time

import procrastinate
from procrastinate.exceptions import ConnectorException
from procrastinate.manager import JobManager
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from waypost.logs import job_request_id, log_context
from waypost.settings import Settings
from waypost.sql import query
from worker.operator_send import send_operator_message
from worker.queue import MAINTENANCE_QUEUE, app
from worker.reply import conversation_lock, send_reply
from worker.resources import resources_of

logger = logging.getLogger(__name__)

# A webhook commits its job row and its queue row together, so a younger job is never orphaned;
# the margin only spares rows a worker is closing at this very moment.
MIN_AGE_SECONDS = 5.0


@dataclasses.dataclass
class SweepReport:
    stalled_jobs_retried: int = 0
    outbound_jobs_redeferred: int = 0
    outbound_jobs_failed: int = 0
    operator_messages_redeferred: int = 0
    operator_messages_failed: int = 0
    webhook_events_deleted: int = 0
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


async def sweep(pool: AsyncConnectionPool, settings: Settings) -> SweepReport:
    started = time.perf_counter()
    report = SweepReport()
    connector = procrastinate.PsycopgConnector()
    await connector.open_async(pool=pool)  # our pool, not a second one
    manager = JobManager(connector)

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
        cursor = await conn.execute(query("sweep_orphan_outbound_jobs"), orphan_params)
        for job in await cursor.fetchall():
            if job["attempts"] >= settings.reply_max_attempts:
                reason = (
                    f"gave up after {job['attempts']} attempt(s); see the worker log for request {job['request_id']}"
                )
                await conn.execute(
                    query("outbound_job_give_up"), {"outbound_job_id": job["id"], "reason": reason}
                )
                report.outbound_jobs_failed += 1
                continue
            procrastinate_job_id = await send_reply.configure(
                connection=conn, lock=conversation_lock(job["conversation_id"])
            ).defer_async(outbound_job_id=job["id"], request_id=job["request_id"])
            await conn.execute(
                query("outbound_job_set_procrastinate_id"),
                {"outbound_job_id": job["id"], "procrastinate_job_id": procrastinate_job_id},
            )
            report.outbound_jobs_redeferred += 1
            logger.warning(
                "sweep: re-deferred outbound job %s as procrastinate job %s (request_id=%s)",
                job["id"],
                procrastinate_job_id,
                job["request_id"],
            )

    # 3. Operator messages whose send job was lost (or whose outcome stayed unknown past the grace).
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(query("sweep_orphan_operator_messages"), orphan_params)
        for message in await cursor.fetchall():
            if message["send_attempts"] >= settings.reply_max_attempts:
                reason = f"gave up after {message['send_attempts']} send attempt(s)"
                errors = Jsonb([{"title": "Waypost gave up", "message": reason}])
                await conn.execute(
                    query("fail_send"), {"message_id": message["id"], "errors": errors, "reason": reason}
                )
                report.operator_messages_failed += 1
                continue
            await send_operator_message.configure(
                connection=conn, lock=conversation_lock(message["conversation_id"])
            ).defer_async(message_id=message["id"], request_id=f"sweep-{message['id']}")
            report.operator_messages_redeferred += 1
            logger.warning("sweep: re-deferred the send of operator message %s", message["id"])

    # 4. Retention.
    hours = max(1, round(settings.retention_days * 24))
    await manager.delete_old_jobs(nb_hours=hours, include_failed=True, include_cancelled=True, include_aborted=True)
    async with pool.connection() as conn:
        cursor = await conn.execute(
            query("sweep_delete_old_webhook_events"), {"seconds": settings.retention_days * 86400}
        )
        report.webhook_events_deleted = cursor.rowcount
        await conn.execute(query("sweep_delete_old_sign_in_attempts"))
        await conn.execute(
            query("sweep_delete_old_operator_sessions"), {"seconds": settings.retention_days * 86400}
        )
    report.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info("sweep done: %s", report.as_dict())
    return report


@app.periodic(cron="* * * * *", periodic_id="sweep")
@app.task(name="sweep", queue=MAINTENANCE_QUEUE, queueing_lock="sweep", pass_context=True)
async def sweep_task(context: procrastinate.JobContext, timestamp: int) -> None:
    connector = context.app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    job = context.job
    assert job.id is not None
    # A periodic run serves no request: its lines carry its own id, as procrastinate's do (waypost.logs).
    with log_context(request_id=job_request_id(job.task_name, job.id, job.task_kwargs), job_id=job.id):
        await sweep(connector.pool, resources_of(context).settings)
