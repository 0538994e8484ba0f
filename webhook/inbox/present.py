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
    "waiting": "waiting for a person",
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


def owner_of(row: dict[str, Any]) -> dict[str, Any]:
    """Who owns a conversation (README "Handing over"): `ai` (the AI answers), `waiting` (handed over
    to a person, no operator has answered or taken it yet: with the reason and since when), `operator`
    (the named operator who took it or answered) or `paused` ("A person": the AI is paused, nobody
    named: paused from the phone app, or before ownership was recorded)."""
    if row["ai_enabled"]:
        kind, label = "ai", "AI"
    elif row.get("handed_over_at") and not row.get("owned_at"):
        kind, label = "waiting", "Waiting for a person"
    elif row.get("owner_email"):
        kind, label = "operator", row["owner_email"]
    else:
        kind, label = "paused", "A person"
    handed_over = not row["ai_enabled"] and row.get("handed_over_at") is not None
    return {
        "kind": kind,
        "label": label,
        "operator": row.get("owner_email") if kind == "operator" else None,
        "handed_over_at": iso(row.get("handed_over_at")) if handed_over else None,
        "handover_reason": row.get("handover_reason") if handed_over else None,
    }


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
        "owner": owner_of(row),
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
        **changes_json(row),
        "tap": tap_of(row),
        "interactive": interactive_of(row),
        "operator_reaction": row.get("operator_reaction"),
        **cost_json(row),
    }


def cost_json(row: dict[str, Any]) -> dict[str, Any]:
    """What Meta said the message costs (from its status webhook), and the sweep's "not delivered"
    flag while no delivery has come."""
    pricing = (
        {"category": row["pricing_category"], "type": row["pricing_type"], "billable": row["billable"]}
        if row.get("pricing_category") or row.get("pricing_type")
        else None
    )
    undelivered = row.get("undelivered_at") if row["status"] == "sent" else None
    return {"pricing": pricing, "undelivered_at": iso(undelivered)}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def tap_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """An inbound tap: the choice the contact tapped (a reply button, a list row, a template quick
    reply), with its id. The message it answers is `quoted` (its context.id)."""
    payload = row.get("interactive")
    if row["direction"] != "inbound" or not isinstance(payload, dict):
        return None
    part = payload.get(payload.get("type") or "")
    if not isinstance(part, dict):
        return None
    if payload["type"] == "button":  # a template's quick reply: {payload, text}
        return {"kind": "quick_reply", "id": _text(part.get("payload")), "title": _text(part.get("text"))}
    for kind in ("button_reply", "list_reply"):
        choice = part.get(kind)
        if isinstance(choice, dict):
            return {
                "kind": kind,
                "id": _text(choice.get("id")),
                "title": _text(choice.get("title")),
                "description": _text(choice.get("description")),
            }
    return None


def interactive_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """An outbound interactive message as sent: its text, and its buttons or list rows."""
    payload = row.get("interactive")
    if row["direction"] != "outbound" or not isinstance(payload, dict):
        return None
    action, body = _object(payload.get("action")), _object(payload.get("body"))
    if payload.get("type") == "button":
        choices = [b.get("reply") or {} for b in action.get("buttons") or [] if isinstance(b, dict)]
    else:
        sections = [s for s in action.get("sections") or [] if isinstance(s, dict)]
        choices = [r for s in sections for r in s.get("rows") or [] if isinstance(r, dict)]
    return {
        "type": payload.get("type"),
        "text": _text(body.get("text")),
        "button": _text(action.get("button")),
        "choices": [
            {"id": _text(c.get("id")), "title": _text(c.get("title")), "description": _text(c.get("description"))}
            for c in choices
        ],
    }


def changes_json(row: dict[str, Any]) -> dict[str, Any]:
    """Edits, deletions and where an outbound message was written: `source` is "phone_app" for a message
    the business sent from the WhatsApp Business app; `deleted_by` is who deleted it for everyone (its text
    stays); `unmatched_change` is an edit or deletion of a message Waypost does not have."""
    revoked = row.get("revoked_at")
    return {
        "source": row.get("source"),
        "edited_at": iso(row.get("edited_at")),
        "earlier_texts": list(row.get("earlier_bodies") or []),
        "revoked_at": iso(revoked),
        "deleted_by": ("contact" if row["direction"] == "inbound" else "business") if revoked else None,
        "unmatched_change": {
            "kind": row["change_kind"],
            "original_wa_message_id": row.get("change_original"),
            "body": row.get("change_body"),
        }
        if row.get("change_kind")
        else None,
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
        # a voice note's transcript (WAYPOST_TRANSCRIBE_URL): pending, done (the text) or failed
        "transcript_status": row.get("media_transcript_status"),
        "transcript": row.get("media_transcript"),
    }


def consent_json(row: dict[str, Any]) -> dict[str, Any]:
    """A contact's marketing opt-out and block (store.consent), as the inbox shows them."""
    request = None
    if row["block_request_id"] is not None:
        error = row["block_request_error"]
        request = {
            "id": row["block_request_id"],
            "action": row["block_request_action"],
            "status": row["block_request_status"],
            "error": error,
            "error_text": error_text(error) if error else "",
            "created_at": iso(row["block_request_at"]),
        }
    return {
        "marketing_opt_out": row["marketing_opt_out"],
        "marketing_changed_at": iso(row["marketing_changed_at"]),
        "marketing_source": row["marketing_source"],
        "blocked": row["blocked"],
        "block_changed_at": iso(row["block_changed_at"]),
        "may_receive_marketing": row["may_receive_marketing"],
        "marketing_refusal": None if row["may_receive_marketing"] else _refusal(row),
        "block_request": request,
    }


def _refusal(row: dict[str, Any]) -> str:
    """Why a marketing template would be refused, in the operator's words."""
    if row["blocked"]:
        return "This contact is blocked: no message reaches them until they are unblocked."
    if row["marketing_source"] == "user_preferences":
        return "This contact stopped marketing messages in WhatsApp: only utility and service messages may go to them."
    return (
        "This contact opted out of marketing messages (they wrote an opt-out word): "
        "only utility and service messages may go to them."
    )


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
