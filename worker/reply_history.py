"""What the AI reads of a conversation (worker.reply's history): a `reply_history` row as a Turn, and
the photo answered, for a model that can see it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from waypost.errors import MediaStoreUnavailable
from waypost.text import mime_base
from worker.orchestrator import Image, Quote, Turn, reads_images
from worker.resources import WorkerResources

if TYPE_CHECKING:
    from worker.sending import Stopwatch

# The image types OpenAI-compatible vision models take
VISION_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


def turn_of(row: dict[str, Any]) -> Turn:
    """A `reply_history` row as the AI reads it."""
    text = row["body"] or (row["transcript"] if row["type"] == "audio" else None) or ""
    quoted = None
    if row["quoted_author"] is not None:
        quoted = Quote(row["quoted_author"], row["quoted_text"] or "", row["quoted_type"])
    filename = row["filename"] if row["type"] == "document" else None
    return Turn(row["author"], text, kind=row["type"], filename=filename, quoted=quoted)


async def vision_image(resources: WorkerResources, clock: Stopwatch, row: dict[str, Any]) -> Image | None:
    """The photo answered, for a model that can see it: stored, of a type it reads, small enough."""
    settings = resources.settings
    mime_type = mime_base(row["mime_type"])
    if not (reads_images(settings) and row["type"] == "image" and mime_type in VISION_TYPES):
        return None
    if row["media_status"] != "stored" or (row["byte_size"] or 0) > settings.openai_vision_max_bytes:
        return None
    media = {"id": row["media_id"], **{k: row[k] for k in ("storage", "object_bucket", "object_key")}}
    data = bytearray()
    try:
        async for chunk in resources.media_store.chunks(resources.pool, media):
            data += chunk
    except MediaStoreUnavailable as exc:
        clock.log("vision image", f"not read: {exc}", logging.WARNING)
        return None
    return Image(mime_type, bytes(data)) if data else None
