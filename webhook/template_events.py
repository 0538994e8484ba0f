"""`message_template_quality_update` and `template_category_update` webhooks. Like the status webhook
(webhook/templates.py), each event leaves one `template_events` row (a redelivered webhook records,
changes and notifies nothing) and may notify the operators (waypost/template_notices.py).

An event older than what the template's row holds (a later event, or a sync) changes nothing and
notifies nothing. Shapes: docs/whatsapp.md "Message templates".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
from typing import Any

from waypost.db import DictConnection, execute, fetch_optional
from waypost.template_notices import category_notice, notify, pending_category_notice, quality_notice, record_event
from waypost.text import clean_text

logger = logging.getLogger(__name__)

QUALITY_FIELD = "message_template_quality_update"
CATEGORY_FIELD = "template_category_update"
FIELDS = frozenset({QUALITY_FIELD, CATEGORY_FIELD})
# Meta's documented values; anything else is refused with its reason (journaled, operators told)
QUALITY_SCORES = frozenset({"GREEN", "YELLOW", "RED", "UNKNOWN"})
CATEGORIES = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
_LATEST = 4_102_444_800  # 2100-01-01: a time past this is not a time
_WORD = re.compile(r"[A-Z_]{1,32}")


@dataclasses.dataclass(frozen=True)
class TemplateChange:
    """A quality or category webhook about one template."""

    kind: str  # quality | category | category_pending
    waba_id: str
    template_id: str | None
    name: str
    language: str
    value: str  # the new quality score or category (for category_pending: the category to come)
    previous: str | None
    occurred_at: dt.datetime
    event_key: str
    effective_at: dt.datetime | None = None  # category_pending: when Meta will recategorise it


def text_of(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = clean_text(str(value)).strip()[:limit]
    return text or None


def unix_time(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < _LATEST:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def event_key(field: str, raw_entry: Any, raw_value: Any) -> str:
    """The same for every delivery of one webhook: the field, the entry's time and the value's hash."""
    entry = raw_entry if isinstance(raw_entry, dict) else {}
    canonical = json.dumps([entry.get("id"), entry.get("time"), raw_value], sort_keys=True, default=str)
    return f"{field}:{hashlib.sha256(canonical.encode()).hexdigest()}"


def _word(raw: dict[str, Any], key: str, allowed: frozenset[str]) -> str | ValueError | None:
    """A documented upper-case value, None when absent, or why it is refused."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _WORD.fullmatch(value.strip().upper()):
        return ValueError(f"{key} must be a word such as {min(allowed)}")
    word = value.strip().upper()
    if word not in allowed:
        return ValueError(f"{key} {word!r} is not one of {', '.join(sorted(allowed))}")
    return word


def template_change_of(field: str, raw_entry: Any, raw_value: Any) -> TemplateChange | str:
    """A quality or category change's value as a TemplateChange, or the reason it cannot be stored."""
    if not isinstance(raw_value, dict):
        return "value must be an object"
    name = text_of(raw_value.get("message_template_name"), 512)
    language = text_of(raw_value.get("message_template_language"), 32)
    if not name or not language:
        return "message_template_name and message_template_language are required"
    entry = raw_entry if isinstance(raw_entry, dict) else {}
    effective_at = None
    if field == QUALITY_FIELD:
        kind, required = "quality", "new_quality_score"
        new = _word(raw_value, "new_quality_score", QUALITY_SCORES)
        previous = _word(raw_value, "previous_quality_score", QUALITY_SCORES)
    else:
        kind, required = "category", "new_category"
        new = _word(raw_value, "new_category", CATEGORIES)
        previous = _word(raw_value, "previous_category", CATEGORIES)
        correct = _word(raw_value, "correct_category", CATEGORIES)
        if correct is not None:  # Meta's notice of a change to come: new_category is the current one
            kind, required, new, previous = "category_pending", "correct_category", correct, new
            effective_at = unix_time(raw_value.get("category_update_timestamp"))
    for found in (new, previous):
        if isinstance(found, ValueError):
            return str(found)
    if not isinstance(new, str):
        return f"{required} is required"
    return TemplateChange(
        kind=kind,
        waba_id=text_of(entry.get("id"), 64) or "",
        template_id=text_of(raw_value.get("message_template_id"), 64),
        name=name,
        language=language,
        value=new,
        previous=previous if isinstance(previous, str) else None,
        occurred_at=unix_time(entry.get("time")) or dt.datetime.now(dt.UTC),
        event_key=event_key(field, raw_entry, raw_value),
        effective_at=effective_at,
    )


def _notice(change: TemplateChange) -> tuple[str, str | None]:
    """(kind, body) of the operators' notification for a quality or category change (body None: none)."""
    name, language, value, previous = change.name, change.language, change.value, change.previous
    if change.kind == "quality":
        return "template_quality", quality_notice(name, language, value, previous)
    if change.kind == "category_pending":
        return "template_category", pending_category_notice(name, language, value, previous, change.effective_at)
    return "template_category", category_notice(name, language, value, previous)


async def apply_template_change(conn: DictConnection, change: TemplateChange) -> str:
    """Record the event, apply it unless it is older than what is stored, tell the operators.
    Returns duplicate, stale, unknown_template (recorded; the next sync brings the template) or applied."""
    event_id = await record_event(
        conn,
        kind=change.kind,
        waba_id=change.waba_id,
        name=change.name,
        language=change.language,
        value=change.value,
        previous=change.previous,
        reason=None,
        event_key=change.event_key,
        occurred_at=change.occurred_at,
    )
    if event_id is None:
        outcome = "duplicate"
    else:
        exists = await fetch_optional(conn, "template_lock", name=change.name, language=change.language)
        params = {
            "name": change.name,
            "language": change.language,
            "value": change.value,
            "template_id": change.template_id,
            "occurred_at": change.occurred_at,
        }
        if change.kind == "category_pending" and exists is not None:  # a notice: nothing changes yet
            when = {"name": change.name, "language": change.language, "occurred_at": change.occurred_at}
            applied = await fetch_optional(conn, "template_category_pending_current", **when) is not None
        elif exists is not None:
            query = "template_apply_quality" if change.kind == "quality" else "template_apply_category"
            applied = await fetch_optional(conn, query, **params) is not None
        else:
            applied = False
        if applied:
            await execute(conn, "template_event_applied", id=event_id)
        outcome = "applied" if applied else ("stale" if exists is not None else "unknown_template")
        if outcome != "stale":
            await notify(conn, *_notice(change))
    logger.info("template %s/%s %s %s: %s", change.name, change.language, change.kind, change.value, outcome)
    return outcome
