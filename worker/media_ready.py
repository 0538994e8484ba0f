"""When a media message's file is ready for the AI, and the replies that wait for it.

A reply run whose file is still downloading (or being transcribed) does not sleep: it marks its
outbound job as waiting (`outbound_job_wait`, under the media row's lock) and ends, freeing its worker
slot. Every step that settles the file (stored, transcribed, or given up) runs `file_settled` in its
own transaction, which defers the waiting replies there: the wake-up commits with the file, or not at
all. The sweep keeps downloads and transcriptions whose job was lost going (`sweep_stuck_media`), and
they end within WAYPOST_MEDIA_MAX_ATTEMPTS, so no reply waits forever.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection

from waypost.db import execute, fetch_all, fetch_optional
from waypost.logs import request_id_var
from waypost.settings import Settings
from worker.orchestrator import reads_images
from worker.tasks import defer_download, defer_transcription, requeue_reply

logger = logging.getLogger(__name__)


def transcribes(settings: Settings, kind: str) -> bool:
    """Whether a file of this kind is transcribed before the AI answers it."""
    return kind == "audio" and settings.transcription_on


def file_pending(settings: Settings, media: dict[str, Any]) -> bool:
    """Whether a reply must wait for its message's file: it is being transcribed, or still
    downloading and of a kind the AI will read (a voice note to transcribe, a photo for a model that
    can see). Anything else is answered at once, from its caption or as unreadable."""
    if media["transcript_status"] == "pending":
        return True
    if media["status"] != "pending":
        return False
    return transcribes(settings, media["kind"]) or (media["kind"] == "image" and reads_images(settings))


async def file_stored(conn: AsyncConnection[Any], settings: Settings, media_id: int, kind: str) -> None:
    """In the download's transaction: a voice note goes on to its transcription; anything else is
    ready, and wakes its reply."""
    if transcribes(settings, kind) and await fetch_optional(conn, "media_transcription_due", media_id=media_id):
        request_id = request_id_var.get()
        job_id = await defer_transcription(conn, media_id=media_id, request_id=request_id)
        logger.info("media %s: transcription queued as job %s", media_id, job_id)
        return
    await file_settled(conn, media_id)


async def file_settled(conn: AsyncConnection[Any], media_id: int) -> int:
    """In the transaction that stores, transcribes or gives up the file: the replies waiting for it
    run now. Returns how many were woken."""
    woken = await fetch_all(conn, "media_wake_replies", media_id=media_id)
    for job in woken:
        await requeue_reply(conn, job, "media_reply_woken")
        logger.info("media %s settled: woke the reply of outbound job %s", media_id, job["id"])
    return len(woken)


async def give_up_transcription(conn: AsyncConnection[Any], media: dict[str, Any], reason: str) -> None:
    """The voice note will not be transcribed: the operators are told, the reply goes ahead (it gets
    the unreadable answer)."""
    if await fetch_optional(conn, "transcription_give_up", media_id=media["id"], error=reason):
        await _settled_badly(conn, media, f"The contact's voice note could not be transcribed: {reason}")


async def give_up_download(conn: AsyncConnection[Any], media: dict[str, Any], reason: str) -> None:
    if await fetch_optional(conn, "media_give_up", media_id=media["id"], last_error=reason):
        await _settled_badly(conn, media, f"The contact's {media['kind']} could not be downloaded: {reason}")


async def _settled_badly(conn: AsyncConnection[Any], media: dict[str, Any], body: str) -> None:
    """A file given up: the inbox updates, the operators are told, a reply waiting for it goes ahead."""
    await execute(conn, "media_message_changed", media_id=media["id"])
    await execute(
        conn,
        "notification_insert",
        conversation_id=media["conversation_id"],
        message_id=media["message_id"],
        kind="media_failed",
        body=body,
    )
    await file_settled(conn, media["id"])


async def sweep_stuck_media(conn: AsyncConnection[Any], settings: Settings, min_age: float) -> tuple[int, int]:
    """Downloads and transcriptions to do whose job is gone: queued again, or given up once out of
    attempts. Returns (queued again, given up)."""
    queued = given_up = 0
    limit = settings.media_max_attempts
    for media in await fetch_all(conn, "sweep_stuck_media", min_age=min_age):
        request_id = f"sweep-media-{media['id']}"
        if media["status"] == "pending":
            if media["attempts"] >= limit:
                await give_up_download(conn, media, f"gave up after {media['attempts']} attempt(s)")
                given_up += 1
            else:
                await defer_download(conn, media_id=media["id"], request_id=request_id)
                queued += 1
        elif media["transcript_attempts"] >= limit:
            await give_up_transcription(conn, media, f"gave up after {media['transcript_attempts']} attempt(s)")
            given_up += 1
        else:
            await defer_transcription(conn, media_id=media["id"], request_id=request_id)
            queued += 1
        step = "download" if media["status"] == "pending" else "transcription"
        logger.warning("sweep: media %s had no job for its %s", media["id"], step)
    return queued, given_up
