"""`message_template_status_update` webhooks: a template approved, rejected, paused, disabled… The
template's row in `message_templates` takes the new status in the webhook's transaction (the body is
journaled like every webhook's). An older event delivered late never overwrites a newer status: the
row keeps when its status last changed (`updated_at`), and a sync counts as now. Each event is
recorded once in `template_events` (a redelivery does nothing) and a template paused, disabled or
rejected is notified to the operators (waypost/template_notices.py). docs/whatsapp.md "Message templates".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from waypost.db import DictConnection, execute, fetch_optional
from waypost.template_notices import notify, record_event, status_notice
from waypost.text import clean_text
from webhook.template_events import event_key

logger = logging.getLogger(__name__)

FIELD = "message_template_status_update"


@dataclasses.dataclass(frozen=True)
class TemplateStatus:
    waba_id: str
    template_id: str | None
    name: str
    language: str
    status: str
    category: str | None
    reason: str | None
    occurred_at: dt.datetime
    event_key: str = ""  # the same for every delivery of this webhook


def _text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = clean_text(str(value)).strip()[:limit]
    return text or None


def template_status_of(raw_entry: Any, raw_value: Any) -> TemplateStatus | str:
    """The change's value as a TemplateStatus, or the reason it cannot be stored."""
    if not isinstance(raw_value, dict):
        return "value must be an object"
    name = _text(raw_value.get("message_template_name"), 512)
    language = _text(raw_value.get("message_template_language"), 32)
    event = _text(raw_value.get("event"), 64)
    if not name or not language or not event:
        return "message_template_name, message_template_language and event are required"
    when = raw_entry.get("time") if isinstance(raw_entry, dict) else None
    occurred_at = dt.datetime.now(dt.UTC)
    if isinstance(when, int | float) and not isinstance(when, bool) and 0 < when < 4_102_444_800:
        occurred_at = dt.datetime.fromtimestamp(when, dt.UTC)
    reason = _text(raw_value.get("reason"), 1000)
    return TemplateStatus(
        waba_id=_text(raw_entry.get("id") if isinstance(raw_entry, dict) else None, 64) or "",
        template_id=_text(raw_value.get("message_template_id"), 64),
        name=name,
        language=language,
        status=event.upper(),
        category=_text(raw_value.get("message_template_category"), 64),
        reason=None if reason in (None, "NONE") else reason,
        occurred_at=occurred_at,
        event_key=event_key(FIELD, raw_entry, raw_value),
    )


async def apply_template_status(conn: DictConnection, update: TemplateStatus) -> bool:
    """The template's new status; False when a newer one is stored already, or when Meta delivered
    this event before (then nothing is done, the operators' notification included)."""
    event_id = await record_event(
        conn,
        kind="status",
        waba_id=update.waba_id,
        name=update.name,
        language=update.language,
        value=update.status,
        previous=None,
        reason=update.reason,
        event_key=update.event_key,
        occurred_at=update.occurred_at,
    )
    if event_id is None:
        logger.info("template %s/%s: %s delivered again, ignored", update.name, update.language, update.status)
        return False
    row = await fetch_optional(
        conn,
        "template_apply_status",
        template_id=update.template_id,
        waba_id=update.waba_id,
        name=update.name,
        language=update.language,
        category=update.category,
        status=update.status,
        reason=update.reason,
        occurred_at=update.occurred_at,
    )
    logger.info(
        "template %s/%s: %s %s", update.name, update.language, update.status, "applied" if row else "older, ignored"
    )
    if row is None:
        return False
    await execute(conn, "template_event_applied", id=event_id)
    await notify(conn, "template_status", status_notice(update.name, update.language, update.status, update.reason))
    return True
