"""Serving a contact's file to an operator. Files come from outside, so the inbox's origin renders
only what is known to be harmless: an image, audio or video whose stored type is on a short list AND
whose first bytes say the same. Anything else (an SVG, an HTML page, a PDF, a type that lies) is
offered as a download (`application/octet-stream`, `Content-Disposition: attachment`). Always
`nosniff`, and the bytes are streamed a stored chunk at a time, from PostgreSQL or the S3 store."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.responses import Response, StreamingResponse

from waypost.db import DictPool, fetch_optional
from waypost.errors import NotFound
from waypost.media_store import MediaStore
from waypost.text import mime_base

# Types shown inline, each with the first bytes that prove it (offset, magic).
INLINE: dict[str, tuple[tuple[int, bytes], ...]] = {
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/webp": ((8, b"WEBP"),),
    "audio/ogg": ((0, b"OggS"),),
    "audio/mpeg": ((0, b"ID3"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2")),
    "audio/mp4": ((4, b"ftyp"),),
    "audio/aac": ((0, b"\xff\xf1"), (0, b"\xff\xf9")),
    "audio/amr": ((0, b"#!AMR"),),
    "video/mp4": ((4, b"ftyp"),),
    "video/3gpp": ((4, b"ftyp"),),
}


def inline_type(mime_type: str | None, head: bytes) -> str | None:
    """The type to render the file inline with, or None: offer it as a download."""
    base = mime_base(mime_type)
    magics = INLINE.get(base, ())
    return base if any(head[offset : offset + len(magic)] == magic for offset, magic in magics) else None


def kind_shown(kind: str | None, mime_type: str | None) -> str | None:
    """How a page shows a stored file: image, audio, video, or None (a link). The served bytes are
    checked again by inline_type; a file that fails that check is a download even in an <img>."""
    base = mime_base(mime_type)
    family = base.split("/")[0]
    return family if base in INLINE and family in ("image", "audio", "video") and kind != "document" else None


def disposition(kind: str, filename: str | None, inline: bool) -> str:
    """Content-Disposition with the contact's file name, stripped of what a header cannot carry."""
    name = "".join(c for c in filename or "" if c.isprintable()).strip() or kind
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("\\", "_")
    quoted = urllib.parse.quote(name, safe="")
    return f"{'inline' if inline else 'attachment'}; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"


async def media_response(pool: DictPool, store: MediaStore, media_id: int, *, download: bool) -> Response:
    async with pool.connection() as conn:
        media = await fetch_optional(conn, "media_file", media_id=media_id)
    if media is None or media["status"] != "stored":
        raise NotFound.of("file")
    chunks = store.chunks(pool, media)  # from where this file's row says its bytes are
    head = await anext(chunks, None)
    if head is None:
        await chunks.aclose()
        raise NotFound.of("file")
    shown = None if download else inline_type(media["mime_type"], head[:16])
    headers = {
        "Content-Disposition": disposition(media["kind"], media["filename"], shown is not None),
        "Content-Length": str(media["byte_size"]),
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(_then(head, chunks), media_type=shown or "application/octet-stream", headers=headers)


async def _then(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()
