"""Downloading an inbound media file: its own job, queued with the message (webhook.ingest).

Each attempt asks Meta for a fresh URL (`GET /{media-id}`: the URL lives minutes, the id days), streams
the file from Meta's media host with the access token, and writes it a chunk at a time into the media
store (waypost.media_store: PostgreSQL or S3), so a large file never sits whole in memory and a failed
attempt leaves nothing behind. An attempt has WAYPOST_MEDIA_DOWNLOAD_TIMEOUT in all: a download that
hangs or drips is cut off and retried with a fresh URL. The bytes are checked against the SHA-256
Meta gave and against Meta's size limit for the kind. A transient failure is retried with backoff up
to WAYPOST_MEDIA_MAX_ATTEMPTS; then the download is given up: the message stays, the inbox says the
file could not be fetched, the operators get a notification. Nothing here blocks the conversation's
replies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from typing import Any

import httpx
import procrastinate
from psycopg import AsyncConnection

from waypost import kinds
from waypost.db import execute, fetch_optional
from waypost.errors import MediaStoreUnavailable
from waypost.logs import log_context
from waypost.media_store import CHUNK_BYTES
from worker.graph import OffHost
from worker.media_ready import file_stored, give_up_download
from worker.queue import app
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision, RetryLater, retry_delay
from worker.tasks import DOWNLOAD_MEDIA, MEDIA_QUEUE

logger = logging.getLogger(__name__)

# Meta's limits per message type (Cloud API, "Supported media types"); docs/whatsapp.md.


class DownloadFailed(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@app.task(name=DOWNLOAD_MEDIA, queue=MEDIA_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def download_media(context: procrastinate.JobContext, media_id: int, request_id: str) -> None:
    with log_context(request_id=request_id, job_id=context.job.id):
        await Download(resources_of(context), media_id).run()


class Download:
    def __init__(self, resources: WorkerResources, media_id: int) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.media_id = media_id
        self.kind = ""

    async def run(self) -> None:
        async with self.resources.pool.connection() as conn:
            media = await fetch_optional(conn, "media_start", media_id=self.media_id)
        if media is None:
            logger.info("media %s: nothing to download (stored or given up)", self.media_id)
            return
        timeout = self.settings.media_download_timeout
        self.kind = str(media["kind"])
        try:
            try:
                async with asyncio.timeout(timeout):
                    size = await self.fetch(media)
            except TimeoutError as exc:
                raise DownloadFailed(f"not downloaded within {timeout:g} s", retryable=True) from exc
        except DownloadFailed as failure:
            await self.failed(media, failure)
        else:
            logger.info("media %s stored: %s bytes, attempt %s", self.media_id, size, media["attempts"])

    async def fetch(self, media: dict[str, Any]) -> int:
        graph = self.resources.graph
        try:
            answer = await graph.media_info(media["wa_media_id"])
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"media lookup: {type(exc).__name__}: {exc}", retryable=True) from exc
        _check_status("media lookup", answer)
        info = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        url = info.get("url") if isinstance(info, dict) else None
        if not isinstance(url, str):
            raise DownloadFailed("media lookup: no URL in Meta's answer", retryable=True)
        limit = kinds.MEDIA_SIZE_LIMITS.get(media["kind"], 100 * kinds.MB)
        declared = _int(info.get("file_size"))
        if declared is not None and declared > limit:
            reason = f"{declared} bytes, over Meta's {limit} byte limit for {media['kind']}"
            raise DownloadFailed(reason, retryable=False)
        expected = {digest for digest in (_hex(info.get("sha256")), _hex(media["sha256"])) if digest}
        mime_type = _text(info.get("mime_type")) or media["mime_type"]
        try:
            async with graph.stream_file(url) as response:
                _check_status("media download", response)
                return await self.store(response, limit, expected, mime_type)
        except OffHost as exc:
            logger.warning("media %s: %s", self.media_id, exc)
            raise DownloadFailed(str(exc), retryable=False) from exc
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"media download: {type(exc).__name__}: {exc}", retryable=True) from exc

    async def store(self, response: httpx.Response, limit: int, expected: set[str], mime_type: str | None) -> int:
        """The file, a chunk at a time, into the media store: all of it or nothing."""
        digest = hashlib.sha256()
        size = 0
        try:
            async with self.resources.media_store.writer(self.resources.pool, self.media_id) as writer:
                async for piece in response.aiter_bytes(CHUNK_BYTES):
                    size += len(piece)
                    if size > limit:
                        raise DownloadFailed(f"over Meta's {limit} byte limit for this kind of file", retryable=False)
                    digest.update(piece)
                    await writer.write(piece)
                if expected and digest.hexdigest() not in expected:
                    raise DownloadFailed("the file's SHA-256 does not match Meta's", retryable=True)
                # what waits for the file (its transcription, or the reply) is queued as it is marked stored
                await writer.commit(mime_type=mime_type, byte_size=size, then=self.stored)
        except MediaStoreUnavailable as exc:
            raise DownloadFailed(f"media store: {exc}", retryable=True) from exc
        return size

    async def stored(self, conn: AsyncConnection[Any]) -> None:
        await file_stored(conn, self.settings, self.media_id, self.kind)  # transcription, or wake the reply

    async def failed(self, media: dict[str, Any], failure: DownloadFailed) -> None:
        attempts = media["attempts"]
        reason = failure.reason[:1000]
        if failure.retryable and attempts < self.settings.media_max_attempts:
            delay = retry_delay(self.settings, attempts)
            logger.warning("media %s: attempt %s failed: %s", self.media_id, attempts, reason)
            async with self.resources.pool.connection() as conn:
                await execute(conn, "media_note", media_id=self.media_id, last_error=reason)
            raise RetryLater(reason, delay)
        logger.error("media %s: download given up after %s attempt(s): %s", self.media_id, attempts, reason)
        async with self.resources.pool.connection() as conn, conn.transaction():
            await give_up_download(conn, media, reason)  # the operators are told, a waiting reply woken


def _check_status(step: str, response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    # A 4xx to the lookup (an unknown media id, a refused token) will not mend by waiting; 429 and
    # 5xx may. A 4xx to the download is most likely an expired URL (Meta's last 5 minutes): the next
    # attempt asks for a fresh one. A redirect means the URL was not Meta's media host after all.
    retryable = response.status_code == 429 or response.status_code >= 500
    if step == "media download" and 400 <= response.status_code < 500:
        retryable = True
    raise DownloadFailed(f"{step}: HTTP {response.status_code}", retryable=retryable)


def _hex(value: Any) -> str | None:
    """A SHA-256 as lowercase hex, whether Meta wrote it in hex or in base64."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return value[:255] if isinstance(value, str) and value else None
