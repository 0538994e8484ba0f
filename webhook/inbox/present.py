"""How the inbox shows rows: JSON shapes for the API, labels for the pages. One place for both."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

STATUS_LABELS = {
    "received": "received",
    "sending": "sending",
    "unknown": "unknown: being reconciled",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "played",
    "failed": "failed",
}
STATUS_TICKS = {"sending": "🕓", "unknown": "?", "sent": "✓", "delivered": "✓✓", "read": "✓✓", "played": "✓✓"}
AUTHOR_LABELS = {"contact": "Contact", "ai": "AI", "operator": "Operator"}
FILTER_LABELS = {
    "unread": "unread",
    "ai_paused": "AI paused",
    "send_failed": "send failed",
    "window_closed": "outside 24-hour window",
}


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def contact_label(row: dict[str, Any]) -> str:
    return row.get("contact_name") or (f"@{row['username']}" if row.get("username") else None) or _number(row)


def _number(row: dict[str, Any]) -> str:
    if row.get("wa_id"):
        return f"+{row['wa_id']}"
    return str(row.get("user_id") or "unknown contact")


def first_error(error: Any) -> dict[str, Any] | None:
    """Meta's first error (code, title, message, details) from a messages.error value."""
    if isinstance(error, list):
        error = error[0] if error else None
    if not isinstance(error, dict):
        return None
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return {
        "code": error.get("code"),
        "title": error.get("title"),
        "message": error.get("message"),
        "details": details,
    }


def error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    parts = [
        str(error["code"]) if error.get("code") is not None else "",
        error.get("title") or error.get("message") or "",
    ]
    text = " ".join(part for part in parts if part)
    if error.get("details"):
        text += f" ({error['details']})"
    return text


def conversation_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["id"],
        "contact": {
            "label": contact_label(row),
            "name": row.get("contact_name"),
            "wa_id": row.get("wa_id"),
            "user_id": row.get("user_id"),
            "username": row.get("username"),
        },
        "ai_enabled": row["ai_enabled"],
        "window_closed": row["window_closed"],
        "last_inbound_at": iso(row.get("last_inbound_at")),
        "deleted_at": iso(row.get("deleted_at")),
        "created_at": iso(row.get("created_at")),
    }
    if "window_closes_at" in row:  # one conversation
        out["window_closes_at"] = iso(row["window_closes_at"])
    if "activity_at" in row:  # a row of the list
        out["activity_at"] = iso(row["activity_at"])
        out["unread"] = row["unread"]
        out["badges"] = {
            "ai_paused": not row["ai_enabled"],
            "send_failed": row["send_failed"],
            "window_closed": row["window_closed"],
        }
        out["last_message"] = (
            {
                "author": row["last_author"],
                "type": row["last_type"],
                "body": row["last_body"],
                "status": row["last_status"],
            }
            if row["last_author"]
            else None
        )
    return out


def message_json(row: dict[str, Any]) -> dict[str, Any]:
    error = first_error(row.get("error"))
    return {
        "id": row["id"],
        "direction": row["direction"],
        "author": row["author"],
        "operator": row.get("operator_email"),
        "type": row["type"],
        "body": row["body"],
        "status": row["status"],
        "error": error if row["status"] == "failed" else None,
        "wa_message_id": row.get("wa_message_id"),
        "contact_sent_at": iso(row.get("contact_sent_at")),
        "created_at": iso(row["created_at"]),
        "sent_at": iso(row.get("sent_at")),
        "delivered_at": iso(row.get("delivered_at")),
        "read_at": iso(row.get("read_at")),
        "failed_at": iso(row.get("failed_at")),
        "ai_job": {"status": row["ai_job_status"], "skip_reason": row.get("ai_skip_reason")}
        if row.get("ai_job_status")
        else None,
        "media": media_json(row),
        # the message a contact replied to (context.id), and the contact's latest reaction to this one
        "quoted": {
            "id": row["quoted_id"],
            "author": row["quoted_author"],
            "type": row["quoted_type"],
            "body": row["quoted_body"],
        }
        if row.get("quoted_id")
        else None,
        "reaction": row.get("reaction"),
        "operator_reaction": row.get("operator_reaction"),
    }


def media_json(row: dict[str, Any]) -> dict[str, Any] | None:
    """A media message's file: its state and, once stored, what it is (served at /inbox/media/{id})."""
    if not row.get("media_id"):
        return None
    return {
        "id": row["media_id"],
        "kind": row["media_kind"],
        "status": row["media_status"],
        "mime_type": row.get("media_mime_type"),
        "filename": row.get("media_filename"),
        "size": row.get("media_size"),
        "error": row.get("media_error") if row["media_status"] == "failed" else None,
    }


def notification_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "body": row["body"],
        "conversation_id": row["conversation_id"],
        "message_id": row["message_id"],
        "contact": contact_label(row) if row["conversation_id"] else None,
        "created_at": iso(row["created_at"]),
        "read_at": iso(row["read_at"]),
        "snoozed_until": iso(row["snoozed_until"]),
    }


def flag(params: Mapping[str, str], name: str) -> bool:
    """A yes/no query parameter, read one way by the pages and the API: 1, true or yes."""
    return params.get(name, "").lower() in {"1", "true", "yes"}


def file_size(size: int | None) -> str:
    """A file's size for people: 912 B, 48 KB, 3.4 MB."""
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"
