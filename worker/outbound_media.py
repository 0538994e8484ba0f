"""A media message's file, uploaded to Meta before its send (`POST /{phone-number-id}/media`).

The file is the message's `media` row (bytes in media_chunks): an operator's attachment, written by
the web app with the message; or a file from WAYPOST_AI_FILES_DIR that the AI answered with, copied
into the database on the first attempt. Meta's media id is stored on the row, and Meta keeps an
upload 30 days: a retry, or a resend after a crash, sends that id again instead of uploading anew.
The bytes go from the database to a temporary file a chunk at a time, then to Meta: bounded memory.

Every failure here is a SendFailed of kind "retryable" or "permanent", never "ambiguous": the
message itself has not been sent yet.
"""

from __future__ import annotations

import logging
import mimetypes
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psycopg

from waypost import attachments, kinds
from waypost.db import execute, fetch_optional
from waypost.errors import WaypostError
from waypost.media_store import CHUNK_BYTES
from worker.graph import SendFailed
from worker.resources import WorkerResources

logger = logging.getLogger(__name__)


def needs_upload(kind: str, content: dict[str, Any]) -> bool:
    """A media message whose Graph object names no uploaded file (id) nor a public URL (link) yet."""
    return kind in kinds.OUTBOUND_MEDIA_TYPES and not (content.get("id") or content.get("link"))


def ai_file(files_dir: Path | None, name: Any) -> Path:
    """A file the AI may send: a plain name inside WAYPOST_AI_FILES_DIR, never a path out of it."""
    if files_dir is None:
        raise SendFailed("permanent", "WAYPOST_AI_FILES_DIR is not set: the AI's file cannot be sent")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise SendFailed("permanent", f"not a file name in WAYPOST_AI_FILES_DIR: {name!r}")
    return files_dir / name


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(CHUNK_BYTES):
            yield chunk


async def _copy_ai_file(resources: WorkerResources, message_id: int, kind: str, content: dict[str, Any]) -> None:
    """The AI's file, checked again (it may have changed since the worker started) and stored as the
    message's media row (in the configured media store), so that the inbox shows it and a retry
    uploads what was sent."""
    path = ai_file(resources.settings.ai_files_dir, content.get("filename"))
    mime_type = mimetypes.guess_type(path.name)[0]
    try:
        with path.open("rb") as file:
            head = file.read(attachments.HEAD_BYTES)
        attachments.check_file(mime_type, path.stat().st_size, head, kind)
    except OSError as exc:
        raise SendFailed("permanent", f"the AI's file cannot be read: {exc}") from exc
    except WaypostError as exc:
        raise SendFailed("permanent", f"the AI's file cannot be sent: {exc}") from exc
    staged = await attachments.stage_file(
        resources.pool,
        resources.media_store,
        kind=kind,
        mime_type=str(mime_type),
        filename=path.name,
        chunks=_file_chunks(path),
    )
    try:
        async with resources.pool.connection() as conn, conn.transaction():
            linked = await fetch_optional(conn, "media_link_staged", media_id=staged, message_id=message_id)
    except psycopg.errors.UniqueViolation:  # another attempt linked its copy first: that one is sent
        linked = None
    if linked is None:
        await resources.media_store.discard_staged(resources.pool, staged)


async def media_content(
    resources: WorkerResources,
    *,
    message_id: int,
    author: str,
    phone_number_id: str,
    kind: str,
    content: dict[str, Any],
) -> dict[str, Any]:
    """The Graph object to send for a media message: `content` with Meta's id of its uploaded file."""
    async with resources.pool.connection() as conn:
        media = await fetch_optional(conn, "media_outbound", message_id=message_id)
    if media is None and author == "ai":
        await _copy_ai_file(resources, message_id, kind, content)
        async with resources.pool.connection() as conn:
            media = await fetch_optional(conn, "media_outbound", message_id=message_id)
    if media is None or media["status"] != "stored":
        raise SendFailed("permanent", "the message's file is not stored (missing, or deleted after the retention)")
    if not media["upload_fresh"]:
        wa_media_id = await _upload(resources, media, phone_number_id)
        async with resources.pool.connection() as conn:
            await execute(conn, "media_uploaded", media_id=media["id"], wa_media_id=wa_media_id)
        logger.info("uploaded media_id=%s as %s (%s bytes)", media["id"], wa_media_id, media["byte_size"])
    else:
        wa_media_id = media["wa_media_id"]
    return {**content, "id": wa_media_id}


async def _upload(resources: WorkerResources, media: dict[str, Any], phone_number_id: str) -> str:
    with tempfile.TemporaryFile() as spool:
        async for chunk in resources.media_store.chunks(resources.pool, media):  # where its row says
            spool.write(chunk)
        spool.seek(0)
        return await resources.graph.upload_media(
            phone_number_id=phone_number_id,
            file=spool,
            size=media["byte_size"] or 0,
            filename=media["filename"] or media["kind"],
            mime_type=media["mime_type"],
        )
