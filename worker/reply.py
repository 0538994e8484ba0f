"""The reply task: one run per outbound_jobs row.

Issue 2 scope: the enqueue path, the transaction and the NOTIFY wake are real; the body only
moves the job through running to done. The orchestrator and the send land with the reply worker.
"""

from __future__ import annotations

import logging
import time

import procrastinate

from waypost.logs import log_context
from waypost.sql import query
from worker.queue import REPLY_QUEUE, app

logger = logging.getLogger(__name__)


def conversation_lock(conversation_id: int) -> str:
    """procrastinate lock serialising the replies of one conversation, in inbound order."""
    return f"conversation:{conversation_id}"


@app.task(name="send_reply", queue=REPLY_QUEUE, pass_context=True)
async def send_reply(context: procrastinate.JobContext, outbound_job_id: int, request_id: str) -> None:
    started = time.perf_counter()
    job_id = context.job.id
    with log_context(request_id=request_id, job_id=job_id):
        connector = context.app.connector
        assert isinstance(connector, procrastinate.PsycopgConnector)
        async with connector.pool.connection() as conn:
            cursor = await conn.execute(query("outbound_job_start"), {"outbound_job_id": outbound_job_id})
            job = await cursor.fetchone()
            if job is None:
                logger.info("picked job outbound_job_id=%s: already finished", outbound_job_id)
                return
            logger.info("picked job outbound_job_id=%s attempt=%s", outbound_job_id, job["attempts"])
            await conn.execute(
                query("outbound_job_finish"),
                {"outbound_job_id": outbound_job_id, "status": "done", "last_error": None, "skip_reason": None},
            )
        logger.info("job done elapsed_ms=%.1f", (time.perf_counter() - started) * 1000)
