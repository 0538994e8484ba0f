"""Edits, deletions and phone-app echoes as webhook/payload.py hands them to webhook/ingest.py.

Shapes (docs/whatsapp.md, "Edits, deletions and messages sent from the phone app"): an `edit` names
`edit.original_message_id` and carries the new message in `edit.message`; a `revoke` names
`revoke.original_message_id`. Both come as `messages` items from the contact, and as
`smb_message_echoes` items when the business edits or deletes from the WhatsApp Business app.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

CHANGE_TYPES = frozenset({"edit", "revoke"})
# As webhook.models.MAX_ID: a Graph id that fits a unique index entry.
MAX_ORIGINAL_ID = 256


@dataclasses.dataclass(frozen=True)
class MessageChange:
    """What an `edit` or `revoke` does to the message it names."""

    kind: str  # edit or revoke
    original_wa_message_id: str
    body: str | None  # an edit's new text (or caption)


@dataclasses.dataclass(frozen=True)
class Echo:
    """A message the business sent from the WhatsApp Business app (coexistence), to its contact."""

    phone_number_id: str
    wa_id: str | None
    user_id: str | None
    wa_message_id: str
    type: str
    body: str | None
    sent_at: dt.datetime
    payload: dict[str, Any]
    change: MessageChange | None = None  # the business edited or deleted one of its messages


def message_change(kind: str, content: Any) -> MessageChange | None:
    """The change an `edit` or `revoke` makes; None for other types, and for one that names no
    message (it is then stored and shown as it came, like any type Waypost does not understand)."""
    if kind not in CHANGE_TYPES or not isinstance(content, dict):
        return None
    original = content.get("original_message_id")
    if not isinstance(original, str) or not 0 < len(original) <= MAX_ORIGINAL_ID:
        return None
    return MessageChange(kind, original, edited_body(content) if kind == "edit" else None)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _part(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def edited_body(edit: dict[str, Any]) -> str | None:
    """The new text of an edit: `edit.message` is a message of its own (`type` and its part: a text's
    body, a media caption). A flatter `edit.text.body` is read too, in case the shape varies."""
    inner = edit.get("message")
    if not isinstance(inner, dict):
        return _text(_part(edit.get("text"), "body"))
    kind = inner.get("type")
    part = inner.get(kind) if isinstance(kind, str) else inner.get("text")
    return _text(_part(part, "body")) or _text(_part(part, "caption")) or _text(inner.get("body"))
