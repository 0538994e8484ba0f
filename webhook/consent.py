"""Marketing consent from the contact: a message that is only an opt-out or opt-in word, and Meta's
`user_preferences` webhook (a marketing stop or resume). Both become `consent_events` rows in the
webhook's transaction, once per event however often Meta delivers it, with a notification for the
operators; the reply task answers an opt-out or opt-in word with its confirmation (worker/consent.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from pydantic import ValidationError

from waypost.db import DictConnection, execute, fetch_optional
from waypost.text import clean_text
from webhook.models import MAX_ID, Metadata

logger = logging.getLogger(__name__)

# Meta's user_preferences values (docs/whatsapp.md): what each does to the contact's marketing consent
PREFERENCE_KINDS = {"stop": "opt_out", "resume": "opt_in"}
MARKETING = "marketing_messages"

NOTICES = {
    (
        "opt_out",
        "keyword",
    ): "The contact wrote an opt-out word: no marketing messages go to them until they opt in again.",
    ("opt_in", "keyword"): "The contact wrote an opt-in word: marketing messages may go to them again.",
    (
        "opt_out",
        "user_preferences",
    ): "The contact stopped marketing messages in WhatsApp: none go to them until they resume.",
    ("opt_in", "user_preferences"): "The contact resumed marketing messages in WhatsApp.",
}


async def record_keyword(conn: DictConnection, message_id: int, kind: str) -> None:
    """A new message that is an opt-out or opt-in word: its event and the operators' notification."""
    row = await fetch_optional(conn, "consent_record_keyword", message_id=message_id, kind=kind)
    if row is None:
        return
    await execute(
        conn,
        "notification_insert",
        conversation_id=row["conversation_id"],
        message_id=message_id,
        kind="opted_out" if kind == "opt_out" else "opted_in",
        body=NOTICES[(kind, "keyword")],
    )
    logger.info("message %s is an %s word: consent event %s", message_id, kind, row["id"])


@dataclasses.dataclass(frozen=True)
class Preference:
    """One item of a user_preferences change: a marketing stop or resume."""

    phone_number_id: str
    wa_id: str | None
    user_id: str | None
    kind: str  # opt_out | opt_in
    value: str
    occurred_at: dt.datetime

    @property
    def event_key(self) -> str:
        contact = self.wa_id or self.user_id
        return f"user_preferences:{self.phone_number_id}:{contact}:{self.value}:{int(self.occurred_at.timestamp())}"


def preferences_of(raw_value: Any) -> tuple[list[Preference], list[tuple[int | None, Any, str]], list[str]]:
    """A user_preferences change's value: its preferences, the items refused (index, item, reason)
    and the ones ignored (another category or value, which Waypost does not act on)."""
    found: list[Preference] = []
    refused: list[tuple[int | None, Any, str]] = []
    ignored: list[str] = []
    if not isinstance(raw_value, dict):
        return found, [(None, None, "value must be an object")], ignored
    try:
        phone_number_id = Metadata.model_validate(raw_value.get("metadata")).phone_number_id
    except ValidationError as exc:
        return found, [(None, None, f"metadata: {exc.errors()[0]['msg']}")], ignored
    items = raw_value.get("user_preferences")
    for i, raw in enumerate(items if isinstance(items, list) else []):
        if not isinstance(raw, dict):
            refused.append((i, raw, "must be an object"))
            continue
        if raw.get("category") != MARKETING or raw.get("value") not in PREFERENCE_KINDS:
            ignored.append(f"user_preferences.{i}: category {raw.get('category')!r} value {raw.get('value')!r}")
            continue
        wa_id, user_id = _id(raw.get("wa_id")), _id(raw.get("user_id"))
        timestamp = raw.get("timestamp")
        if not wa_id and not user_id:
            refused.append((i, raw, "neither wa_id nor user_id names the contact"))
            continue
        try:
            occurred_at = dt.datetime.fromtimestamp(int(str(timestamp)), tz=dt.UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            refused.append((i, raw, "timestamp must be Unix seconds"))
            continue
        kind = PREFERENCE_KINDS[raw["value"]]
        found.append(Preference(phone_number_id, wa_id, user_id, kind, raw["value"], occurred_at))
    return found, refused, ignored


def _id(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and 0 < len(str(value)) <= MAX_ID:
        return clean_text(str(value))
    return None


async def apply_preference(conn: DictConnection, preference: Preference) -> bool:
    """Record a marketing stop or resume; False when this item was recorded already (a redelivery)."""
    row = await fetch_optional(
        conn,
        "consent_record_preference",
        phone_number_id=preference.phone_number_id,
        wa_id=preference.wa_id,
        user_id=preference.user_id,
        kind=preference.kind,
        event_key=preference.event_key,
        occurred_at=preference.occurred_at,
    )
    if row is None:
        return False
    await execute(
        conn,
        "notification_insert",
        conversation_id=row["conversation_id"],
        message_id=None,
        kind="opted_out" if preference.kind == "opt_out" else "opted_in",
        body=NOTICES[(preference.kind, "user_preferences")],
    )
    return True
