"""What the webhook takes from a media message (image, audio and voice notes, video, document,
sticker): the media id and what Meta says of the file. The download itself is a job of its own
(worker/media.py), queued with the message by webhook.ingest."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from webhook.models import MAX_ID
from webhook.payload import InboundMessage

# The message types that carry a file: the part named like the type holds its media id.
MEDIA_KINDS = frozenset({"image", "audio", "video", "document", "sticker"})
# Meta's media ids are numbers; the id becomes a Graph API path, so nothing else gets that far.
MEDIA_ID = re.compile(r"[0-9A-Za-z_-]{1,256}")


@dataclasses.dataclass(frozen=True)
class MediaRef:
    wa_media_id: str
    mime_type: str | None
    sha256: str | None
    filename: str | None
    voice: bool


def media_of(message: InboundMessage) -> MediaRef | None:
    """The file of a media message that names one; None for anything else (stored as it came)."""
    part = message.payload.get(message.type) if message.type in MEDIA_KINDS else None
    if not isinstance(part, dict):
        return None
    media_id = part.get("id")
    if not isinstance(media_id, str) or not MEDIA_ID.fullmatch(media_id):
        return None
    return MediaRef(
        wa_media_id=media_id,
        mime_type=_short(part.get("mime_type")),
        sha256=_short(part.get("sha256")),
        filename=_short(part.get("filename"), 255),
        voice=part.get("voice") is True,
    )


def _short(value: Any, limit: int = MAX_ID) -> str | None:
    """A short descriptive string (a type, a hash, a file name), cut to `limit`; anything else is absent."""
    return value[:limit] if isinstance(value, str) and value else None
