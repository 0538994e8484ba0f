"""Transcribing a voice note: its own job (queue `media`), queued by the download once the file is
stored, when WAYPOST_TRANSCRIBE_URL is set.

The file goes to the transcription endpoint (worker.transcriber) streamed from media_chunks a chunk
at a time, so memory stays bounded (Meta caps audio at 16 MB anyway). A timeout, 429 or 5xx is retried with backoff up
to WAYPOST_MEDIA_MAX_ATTEMPTS; then, or at once on another 4xx, the transcription is given up: the
operators are told and the reply goes ahead with the unreadable answer. Stored or given up, the
reply waiting for it is woken in the same transaction (worker.media_ready).
"""

from __future__ import annotations

import logging
from typing import Any

import procrastinate

from waypost.db import Pool, execute, fetch_optional
from waypost.errors import MediaStoreUnavailable
from waypost.logs import log_context
from waypost.settings import Settings
from worker.media_ready import file_settled, give_up_transcription
from worker.queue import app
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision, RetryLater, retry_delay
from worker.tasks import MEDIA_QUEUE, TRANSCRIBE_MEDIA
from worker.transcriber import TranscriptionFailed

logger = logging.getLogger(__name__)


@app.task(name=TRANSCRIBE_MEDIA, queue=MEDIA_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def transcribe_media(context: procrastinate.JobContext, media_id: int, request_id: str) -> None:
    with log_context(request_id=request_id, job_id=context.job.id):
        resources = resources_of(context)
        pool, settings = resources.pool, resources.settings
        async with pool.connection() as conn:
            media = await fetch_optional(conn, "transcription_start", media_id=media_id)
        if media is None:
            logger.info("media %s: nothing to transcribe (done or given up)", media_id)
            return
        try:
            text = await _transcribe(resources, media)
        except TranscriptionFailed as failure:
            await _failed(pool, settings, media, failure)
            return
        async with pool.connection() as conn, conn.transaction():
            if await fetch_optional(conn, "transcription_done", media_id=media_id, transcript=text):
                await execute(conn, "media_message_changed", media_id=media_id)
                await file_settled(conn, media_id)
        logger.info(
            "media %s transcribed: %s characters, attempt %s", media_id, len(text), media["transcript_attempts"]
        )


async def _transcribe(resources: WorkerResources, media: dict[str, Any]) -> str:
    transcriber = resources.transcriber
    if transcriber is None:
        raise TranscriptionFailed("WAYPOST_TRANSCRIBE_URL is no longer set", retryable=False)
    if media["status"] != "stored":
        raise TranscriptionFailed(f"the file is {media['status']}, not stored", retryable=False)
    # streamed from wherever the file is (PostgreSQL or S3), a chunk at a time
    chunks = resources.media_store.chunks(resources.pool, media)
    try:
        return await transcriber.transcribe(chunks, int(media["byte_size"] or 0), media["mime_type"])
    except MediaStoreUnavailable as exc:
        raise TranscriptionFailed(f"media store: {exc}", retryable=True) from exc


async def _failed(pool: Pool, settings: Settings, media: dict[str, Any], failure: TranscriptionFailed) -> None:
    attempts, reason = media["transcript_attempts"], failure.reason[:1000]
    if failure.retryable and attempts < settings.media_max_attempts:
        logger.warning("media %s: transcription attempt %s failed: %s", media["id"], attempts, reason)
        async with pool.connection() as conn:
            await execute(conn, "transcription_note", media_id=media["id"], error=reason)
        raise RetryLater(reason, retry_delay(settings, attempts))
    logger.error("media %s: transcription given up after %s attempt(s): %s", media["id"], attempts, reason)
    async with pool.connection() as conn, conn.transaction():
        await give_up_transcription(conn, media, reason)
