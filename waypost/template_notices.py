"""What the operators are told about a template, and the `template_events` row each event leaves:
shared by the webhooks (webhook/templates.py, webhook/template_events.py) and the sync
(worker/templates.py), which notices the changes a missed webhook would have told.

A template paused, disabled or rejected (`template_status`), its quality fallen to RED
(`template_quality`), its category changed or about to be (`template_category`). README "Schema".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from waypost.db import DictConnection, execute, fetch_optional

# Statuses the operators are told about: sends of the template fail from then on
NOTIFIED_STATUSES = {"PAUSED": "paused", "DISABLED": "disabled", "REJECTED": "rejected"}
LOW_QUALITY = frozenset({"RED"})  # Meta's "low quality": the template may soon be paused


def _label(name: str, language: str) -> str:
    return f"Template {name} ({language})"


def status_notice(name: str, language: str, status: str, reason: str | None) -> str | None:
    """The `template_status` notification for a status, or None for one the operators need not hear about."""
    verb = NOTIFIED_STATUSES.get(status)
    if verb is None:
        return None
    because = f": {reason}" if reason else ""
    return f"{_label(name, language)} was {verb} by WhatsApp{because}. Sending it fails until it is approved again."


def quality_notice(name: str, language: str, quality: str, previous: str | None) -> str | None:
    """The `template_quality` notification, or None for a quality that is not low."""
    if quality not in LOW_QUALITY:
        return None
    was = f" (was {previous})" if previous else ""
    return f"{_label(name, language)}: WhatsApp rates its quality {quality}{was}; a low-quality template may be paused."


def category_notice(name: str, language: str, category: str, previous: str | None) -> str | None:
    """The `template_category` notification for a completed change, or None when nothing changed."""
    if previous == category:
        return None
    was = f" (was {previous})" if previous else ""
    return f"{_label(name, language)} is now in the {category} category{was}; its price and rules follow it."


def pending_category_notice(
    name: str, language: str, category: str, current: str | None, effective_at: dt.datetime | None
) -> str:
    """The `template_category` notification for Meta's notice of a recategorisation to come."""
    when = f" on {effective_at:%Y-%m-%d %H:%M} UTC" if effective_at else " within 24 hours"
    now = f" from {current}" if current else ""
    return f"{_label(name, language)} will be recategorised{now} to {category}{when} by WhatsApp."


async def record_event(
    conn: DictConnection,
    *,
    kind: str,
    waba_id: str,
    name: str,
    language: str,
    value: str,
    previous: str | None,
    reason: str | None,
    event_key: str,
    occurred_at: dt.datetime,
) -> int | None:
    """The event's `template_events` row; None when it was recorded before (Meta redelivering)."""
    row = await fetch_optional(
        conn,
        "template_event_insert",
        waba_id=waba_id,
        name=name,
        language=language,
        kind=kind,
        previous=previous,
        value=value,
        reason=reason,
        event_key=event_key,
        occurred_at=occurred_at,
    )
    return int(row["id"]) if row is not None else None


async def notify(conn: DictConnection, kind: str, body: str | None) -> None:
    if body is not None:
        await execute(conn, "notification_insert", conversation_id=None, message_id=None, kind=kind, body=body)


async def note_sync_changes(
    conn: DictConnection, waba_id: str, before: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> int:
    """The changes a sync finds in templates it knew already (a webhook missed, or not subscribed to):
    recorded and notified like a webhook's, in the sync's transaction. How many were found."""
    known = {(row["name"], row["language"]): row for row in before}
    now = dt.datetime.now(dt.UTC)
    found = 0
    for row in rows:
        old = known.get((row["name"], row["language"]))
        if old is None:
            continue  # new to Waypost: nothing it knew has changed
        name, language = row["name"], row["language"]
        for kind, notice_kind in (
            ("status", "template_status"),
            ("quality", "template_quality"),
            ("category", "template_category"),
        ):
            value, previous = row[kind], old[kind]
            if value is None or value == previous or (kind == "status" and old["status_newer"]):
                continue  # unchanged, or a status stored since the list was read (the sync kept it)
            reason = row["rejected_reason"] if kind == "status" else None
            if kind == "status":
                body = status_notice(name, language, value, reason)
            elif kind == "quality":
                body = quality_notice(name, language, value, previous)
            else:
                body = category_notice(name, language, value, previous)
            key = f"sync:{waba_id}:{name}:{language}:{kind}:{now.isoformat()}"
            event_id = await record_event(
                conn,
                kind=kind,
                waba_id=waba_id,
                name=name,
                language=language,
                value=value,
                previous=previous,
                reason=reason,
                event_key=key,
                occurred_at=now,
            )
            if event_id is not None:
                await execute(conn, "template_event_applied", id=event_id)
                await notify(conn, notice_kind, body)
                found += 1
    return found
