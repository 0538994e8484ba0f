"""WhatsApp webhook bodies, the one builder for the tests, the benchmarks, the fake Graph API's status
webhooks and `waypost simulate`: Meta's documented example verbatim, and builders for variations."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from waypost.signing import sign as sign

PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
WABA_ID = "102290129340398"
RECIPIENT_ID = "16505551234"
_ids = itertools.count(1)

# Meta's documented inbound text example (reference A3), byte for byte in structure.
DOCUMENTED_INBOUND = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                        "messages": [
                            {
                                "from": "16505551234",
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "Does it come in another color?"},
                            }
                        ],
                    },
                    "field": "messages",
                }
            ],
        }
    ],
}


def new_wamid() -> str:
    return f"wamid.test{next(_ids):08d}"


def text_message(
    body: str, *, wa_id: str = "16505551234", wamid: str | None = None, timestamp: int | None = None
) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": wamid or new_wamid(),
        "timestamp": str(timestamp or int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


def media_message(
    kind: str,
    media_id: str,
    *,
    mime_type: str,
    sha256: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
    voice: bool | None = None,
    wa_id: str = "16505551234",
    wamid: str | None = None,
) -> dict[str, Any]:
    """An inbound image, audio (a voice note with voice=True), video, document or sticker."""
    part: dict[str, Any] = {"id": media_id, "mime_type": mime_type}
    optional = {"sha256": sha256, "caption": caption, "filename": filename, "voice": voice}
    part.update({key: value for key, value in optional.items() if value is not None})
    return {
        "from": wa_id,
        "id": wamid or new_wamid(),
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: part,
    }


def edit_message(
    original_wamid: str, body: str, *, wa_id: str = "16505551234", wamid: str | None = None
) -> dict[str, Any]:
    """The contact edits a text message (Meta's edit webhook reference: the new message in `edit.message`)."""
    return {
        "from": wa_id,
        "id": wamid or new_wamid(),
        "timestamp": str(int(time.time())),
        "type": "edit",
        "edit": {"original_message_id": original_wamid, "message": {"type": "text", "text": {"body": body}}},
    }


def revoke_message(original_wamid: str, *, wa_id: str = "16505551234", wamid: str | None = None) -> dict[str, Any]:
    """The contact deletes a message for everyone (Meta's revoke webhook reference)."""
    return {
        "from": wa_id,
        "id": wamid or new_wamid(),
        "timestamp": str(int(time.time())),
        "type": "revoke",
        "revoke": {"original_message_id": original_wamid},
    }


def echo_message(
    body: str, *, to: str = "16505551234", wamid: str | None = None, business_number: str = DISPLAY_PHONE_NUMBER
) -> dict[str, Any]:
    """A text the business sent from the WhatsApp Business app (an item of `message_echoes`)."""
    return {
        "from": business_number,
        "to": to,
        "id": wamid or new_wamid(),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


def echoes(
    *items: dict[str, Any],
    waba_id: str = WABA_ID,
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> dict[str, Any]:
    """A smb_message_echoes webhook (coexistence): messages the business sent from the phone app."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
        "message_echoes": list(items),
    }
    return envelope([{"value": value, "field": "smb_message_echoes"}], waba_id=waba_id)


def change(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    *,
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["contacts"] = (
            contacts
            if contacts is not None
            else [{"profile": {"name": f"Contact {m['from']}"}, "wa_id": m["from"]} for m in messages]
        )
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"value": value, "field": "messages"}


def envelope(*entries: list[dict[str, Any]], waba_id: str = WABA_ID) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": changes} for changes in entries],
    }


def inbound(*messages: dict[str, Any], waba_id: str = WABA_ID, **kwargs: Any) -> dict[str, Any]:
    return envelope([change(list(messages), **kwargs)], waba_id=waba_id)


def status(
    wamid: str,
    value: str,
    *,
    timestamp: int | None = None,
    callback: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    recipient_id: str = RECIPIENT_ID,
    pricing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": value,
        "timestamp": str(timestamp or int(time.time())),
        "recipient_id": recipient_id,
    }
    if callback is not None:
        item["biz_opaque_callback_data"] = callback
    if errors is not None:
        item["errors"] = errors
    if pricing is not None:
        item["pricing"] = pricing
    return item


def pricing(
    category: str = "service", kind: str = "free_customer_service", billable: bool | None = None
) -> dict[str, Any]:
    """A status's `pricing` object under per-message pricing (docs/whatsapp.md); `billable` is
    deprecated by Meta, so it is left out unless given."""
    found: dict[str, Any] = {"pricing_model": "PMP", "type": kind, "category": category}
    if billable is not None:
        found["billable"] = billable
    return found


def statuses(*items: dict[str, Any], waba_id: str = WABA_ID, **kwargs: Any) -> dict[str, Any]:
    return envelope([change(statuses=list(items), **kwargs)], waba_id=waba_id)


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def user_preferences(
    value: str,
    *,
    wa_id: str = "16505551234",
    timestamp: int | None = None,
    category: str = "marketing_messages",
    phone_number_id: str = PHONE_NUMBER_ID,
    waba_id: str = WABA_ID,
) -> dict[str, Any]:
    """A user_preferences webhook: the contact stopped (`stop`) or resumed (`resume`) marketing messages."""
    detail = {
        "stop": "User requested to stop marketing messages",
        "resume": "User requested to resume marketing messages",
    }
    item = {
        "wa_id": wa_id,
        "detail": detail.get(value, value),
        "category": category,
        "value": value,
        "timestamp": timestamp or int(time.time()),
    }
    value_object = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": f"Contact {wa_id}"}, "wa_id": wa_id}],
        "user_preferences": [item],
    }
    return envelope([{"value": value_object, "field": "user_preferences"}], waba_id=waba_id)


def template_status_update(
    event: str,
    name: str,
    *,
    language: str = "en_US",
    template_id: int = 1234567890,
    reason: str = "NONE",
    category: str | None = None,
    timestamp: int | None = None,
    waba_id: str = WABA_ID,
) -> dict[str, Any]:
    """A message_template_status_update webhook: a template approved, rejected, paused, disabled…"""
    value: dict[str, Any] = {
        "event": event,
        "message_template_id": template_id,
        "message_template_name": name,
        "message_template_language": language,
        "reason": reason,
    }
    if category is not None:
        value["message_template_category"] = category
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": timestamp or int(time.time()),
                "changes": [{"value": value, "field": "message_template_status_update"}],
            }
        ],
    }


def template_quality_update(
    name: str,
    new: str,
    previous: str = "GREEN",
    *,
    language: str = "en_US",
    template_id: int = 1234567890,
    timestamp: int | None = None,
    waba_id: str = WABA_ID,
) -> dict[str, Any]:
    """A message_template_quality_update webhook: a template's quality score changed."""
    value = {
        "previous_quality_score": previous,
        "new_quality_score": new,
        "message_template_id": template_id,
        "message_template_name": name,
        "message_template_language": language,
    }
    return template_change(value, "message_template_quality_update", timestamp=timestamp, waba_id=waba_id)


def template_category_update(
    name: str,
    new: str,
    previous: str | None = None,
    *,
    correct: str | None = None,
    update_at: int | None = None,
    language: str = "en_US",
    template_id: int = 1234567890,
    timestamp: int | None = None,
    waba_id: str = WABA_ID,
) -> dict[str, Any]:
    """A template_category_update webhook: with `previous`, a completed change to `new`; with `correct`,
    Meta's notice that the template (now in `new`) will become `correct` at `update_at`."""
    value: dict[str, Any] = {
        "message_template_id": template_id,
        "message_template_name": name,
        "message_template_language": language,
        "new_category": new,
    }
    if previous is not None:
        value["previous_category"] = previous
    if correct is not None:
        value["correct_category"] = correct
        value["category_update_timestamp"] = update_at or int(time.time()) + 86400
    return template_change(value, "template_category_update", timestamp=timestamp, waba_id=waba_id)


def template_change(value: Any, field: str, *, timestamp: int | None = None, waba_id: str = WABA_ID) -> dict[str, Any]:
    """A WhatsApp Business Account webhook about a template: one change of `field`."""
    entry = {"id": waba_id, "time": timestamp or int(time.time()), "changes": [{"value": value, "field": field}]}
    return {"object": "whatsapp_business_account", "entry": [entry]}
