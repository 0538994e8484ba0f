"""Files Waypost sends (an operator's attachment, a file the AI answers with): checked against what
WhatsApp accepts before anything is stored or sent, then written into the media store (PostgreSQL or
S3) a chunk at a time.

A file's declared type must be one Meta sends for its kind (waypost.kinds.OUTBOUND_MEDIA_TYPES), its
size within Meta's limit for the kind (MEDIA_SIZE_LIMITS), and its first bytes must say the same as
its declared type: an SVG or an HTML page named `.png` is refused here, not by Meta after an upload.

Shared by the web app and the worker. `stage_file` is the one place the bytes are written.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from psycopg import AsyncConnection

from waypost import kinds
from waypost.db import DictPool, execute, fetch_value
from waypost.errors import FileTooLarge, UnsupportedFile
from waypost.media_store import MediaStore
from waypost.text import mime_base

HEAD_BYTES = 64  # enough of a file's start to recognise its type
_ZIP = ((0, b"PK\x03\x04"),)  # docx, xlsx, pptx
_OLE = ((0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"),)  # doc, xls, ppt
_FTYP = ((4, b"ftyp"),)
# The first bytes that prove each type (offset, magic); text/plain is checked as UTF-8 instead.
MAGIC: dict[str, tuple[tuple[int, bytes], ...]] = {
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/webp": ((8, b"WEBP"),),
    "audio/ogg": ((0, b"OggS"),),
    "audio/mpeg": ((0, b"ID3"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2")),
    "audio/mp4": _FTYP,
    "audio/aac": ((0, b"\xff\xf1"), (0, b"\xff\xf9")),
    "audio/amr": ((0, b"#!AMR"),),
    "video/mp4": _FTYP,
    "video/3gpp": _FTYP,
    "application/pdf": ((0, b"%PDF-"),),
    "application/msword": _OLE,
    "application/vnd.ms-excel": _OLE,
    "application/vnd.ms-powerpoint": _OLE,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": _ZIP,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": _ZIP,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _ZIP,
}
# What a file's type makes it by default (an image can still be sent as a document when asked).
DEFAULT_ORDER = ("image", "audio", "video", "document", "sticker")


def kind_for(mime_type: str) -> str | None:
    """The message kind a file of this type is sent as, unless the sender asks for another."""
    return next((kind for kind in DEFAULT_ORDER if mime_type in kinds.OUTBOUND_MEDIA_TYPES[kind]), None)


def _looks_like(mime_type: str, head: bytes) -> bool:
    if mime_type == "text/plain":
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head)  # an unfinished last character is fine
        except UnicodeDecodeError:
            return False
        return b"\x00" not in head
    return any(head[offset : offset + len(magic)] == magic for offset, magic in MAGIC.get(mime_type, ()))


def check_file(declared: str | None, size: int, head: bytes, kind: str | None = None) -> tuple[str, str]:
    """(kind, MIME type) to send a file as, or UnsupportedFile / FileTooLarge saying why not."""
    mime_type = mime_base(declared)
    kind = kind or kind_for(mime_type)
    if kind is None or kind not in kinds.OUTBOUND_MEDIA_TYPES:
        allowed = ", ".join(sorted(set().union(*kinds.OUTBOUND_MEDIA_TYPES.values())))
        raise UnsupportedFile(f"WhatsApp does not send {mime_type or 'untyped'} files; it sends {allowed}")
    if mime_type not in kinds.OUTBOUND_MEDIA_TYPES[kind]:
        raise UnsupportedFile(f"WhatsApp does not send {mime_type or 'untyped'} files as {kind}")
    if size <= 0:
        raise UnsupportedFile("the file is empty")
    limit = kinds.MEDIA_SIZE_LIMITS[kind]
    if size > limit:
        raise FileTooLarge(limit, f"WhatsApp sends a {kind} of at most {limit // 1024} KB; this file is {size} bytes")
    if not _looks_like(mime_type, head):
        raise UnsupportedFile(f"the file's content is not {mime_type}, as its type says")
    return kind, mime_type


def graph_object(kind: str, caption: str | None, filename: str | None) -> dict[str, Any]:
    """The Graph object of a media message before its upload: the worker adds Meta's media `id`."""
    content: dict[str, Any] = {}
    if caption and kind not in ("audio", "sticker"):
        content["caption"] = caption
    if filename and kind == "document":
        content["filename"] = filename
    return content


async def stage_file(
    pool: DictPool,
    store: MediaStore,
    *,
    kind: str,
    mime_type: str,
    filename: str | None,
    chunks: AsyncIterator[bytes],
) -> int:
    """Write a file to send into the media store (PostgreSQL or S3) as a staged media row, before and
    outside the transaction that queues its message (which links it: `media_link_staged`), so a large
    upload never holds the conversation's lock; its media id. A failed write leaves nothing behind."""
    async with pool.connection() as conn:
        media_id = int(
            await fetch_value(conn, "media_insert_staged", kind=kind, mime_type=mime_type, filename=filename)
        )
    digest, size = hashlib.sha256(), 0
    try:
        async with store.writer(pool, media_id) as writer:
            async for chunk in chunks:
                if chunk:
                    digest.update(chunk)
                    size += len(chunk)
                    await writer.write(chunk)

            async def checksum(conn: AsyncConnection[Any]) -> None:
                await execute(conn, "media_stored_outbound", media_id=media_id, sha256=digest.hexdigest())

            await writer.commit(mime_type=mime_type, byte_size=size, then=checksum)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await store.discard_staged(pool, media_id)
        raise
    return media_id
