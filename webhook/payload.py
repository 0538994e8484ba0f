"""Validates a WhatsApp Cloud API webhook body and flattens it into the items Waypost stores.

Every entry x change x messages[]/statuses[]/errors[] is kept: batches are normal. Unknown fields
and unknown message types pass through into `payload`; only a shape we cannot store is an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Types whose text deserves an answer. Reactions, system notices and unsupported types do not.
REPLY_TYPES = frozenset({"text", "interactive", "button", "image", "video", "document"})


class PayloadError(ValueError):
    """The body is not JSON, or not a WhatsApp webhook we can store (HTTP 400)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


def _unix_seconds(value: str) -> str:
    if not value.isdigit():
        raise ValueError("must be Unix seconds as a string of digits")
    return value


class Profile(_Model):
    name: str | None = None
    username: str | None = None


class Contact(_Model):
    # A phone number (wa_id), a business-scoped user id (user_id, BSUID), or both (reference addendum).
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    profile: Profile | None = None

    def names(self, wa_id: str | None, user_id: str | None) -> bool:
        return bool((wa_id and self.wa_id == wa_id) or (user_id and self.user_id == user_id))


class Message(_Model):
    id: str = Field(min_length=1)
    from_: str | None = Field(None, alias="from", min_length=1)
    from_user_id: str | None = Field(None, min_length=1)
    timestamp: str
    type: str = Field(min_length=1)

    _check_timestamp = field_validator("timestamp")(_unix_seconds)

    @model_validator(mode="after")
    def _identified(self) -> Message:
        if not self.from_ and not self.from_user_id:
            raise ValueError("a message needs 'from' (phone number) or 'from_user_id' (BSUID)")
        return self


class Status(_Model):
    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    timestamp: str
    recipient_id: str | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[dict[str, Any]] | None = None

    _check_timestamp = field_validator("timestamp")(_unix_seconds)


class Metadata(_Model):
    phone_number_id: str = Field(min_length=1)


class Value(_Model):
    metadata: Metadata
    contacts: list[Contact] = []
    messages: list[Message] = []
    statuses: list[Status] = []
    errors: list[dict[str, Any]] = []


class Change(_Model):
    field: str
    value: dict[str, Any]


class Entry(_Model):
    id: str | None = None
    changes: list[Change]


class Envelope(_Model):
    object: str
    entry: list[Entry]


@dataclasses.dataclass(frozen=True)
class InboundMessage:
    phone_number_id: str
    wa_id: str | None
    user_id: str | None
    parent_user_id: str | None
    username: str | None
    contact_name: str | None
    wa_message_id: str
    type: str
    body: str | None
    contact_sent_at: dt.datetime
    payload: dict[str, Any]
    # set by user_changed_number / user_changed_user_id system messages
    new_wa_id: str | None = None
    new_user_id: str | None = None

    @property
    def needs_reply(self) -> bool:
        return self.type in REPLY_TYPES and bool(self.body and self.body.strip())


@dataclasses.dataclass(frozen=True)
class StatusUpdate:
    phone_number_id: str
    wa_message_id: str
    status: str
    status_at: dt.datetime
    recipient_id: str | None
    callback_data: str | None
    errors: list[dict[str, Any]] | None
    payload: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PlatformError:
    phone_number_id: str
    error: dict[str, Any]


@dataclasses.dataclass
class Batch:
    messages: list[InboundMessage] = dataclasses.field(default_factory=list)
    statuses: list[StatusUpdate] = dataclasses.field(default_factory=list)
    errors: list[PlatformError] = dataclasses.field(default_factory=list)
    ignored_changes: list[str] = dataclasses.field(default_factory=list)


def _describe(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{prefix}{where}: {item['msg']}" if where else item["msg"])
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _scrub(value: Any) -> Any:
    """Replace NUL characters, which PostgreSQL text and jsonb cannot hold (the journal keeps them),
    and refuse NaN and Infinity, which the JSON parser lets through but JSON (and jsonb) do not allow."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError("body is not valid JSON: NaN and Infinity are not JSON numbers")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _time(unix_seconds: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(unix_seconds), tz=dt.UTC)


def _text(value: Any) -> str | None:
    """A string from a part of the payload that no model types: anything else counts as absent."""
    return value if isinstance(value, str) else None


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def message_body(message: Message) -> str | None:
    """The human-readable text of a message, whatever its type (None when it has none, or when the
    part that should hold it is not a string)."""
    content = getattr(message, message.type, None)
    if not isinstance(content, dict):
        return None
    if message.type == "text":
        return _text(content.get("body"))
    if message.type == "interactive":
        reply = _field(content, "button_reply") or _field(content, "list_reply")
        return _text(_field(reply, "title"))
    if message.type == "button":
        return _text(content.get("text"))
    if message.type == "reaction":
        return _text(content.get("emoji"))
    if message.type == "location":
        return _text(content.get("name")) or _text(content.get("address"))
    if message.type == "system":
        return _text(content.get("body"))
    return _text(content.get("caption"))


def _contact(contacts: list[Contact], message: Message) -> Contact:
    """The contacts[] entry of a message's sender (an empty one for system messages, which have none)."""
    matching = [c for c in contacts if c.names(message.from_, message.from_user_id)]
    if not matching and len(contacts) == 1:
        matching = contacts
    return matching[0] if matching else Contact()


def _identity_change(message: Message) -> tuple[str | None, str | None]:
    """New (wa_id, user_id) announced by a system message, if it is one that changes identifiers."""
    system = getattr(message, "system", None)
    if message.type != "system" or not isinstance(system, dict):
        return None, None
    if system.get("type") == "user_changed_number":
        return _text(system.get("new_wa_id")) or _text(system.get("wa_id")), None
    if system.get("type") == "user_changed_user_id":
        return None, _text(system.get("new_user_id")) or _text(system.get("user_id")) or _text(system.get("user"))
    return None, None


def parse(body: bytes) -> Batch:
    try:
        envelope = Envelope.model_validate_json(body)
    except ValidationError as exc:
        if any(item["type"] == "json_invalid" for item in exc.errors()):
            raise PayloadError(f"body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise PayloadError(f"not a WhatsApp webhook: {_describe(exc)}") from None
    if envelope.object != "whatsapp_business_account":
        raise PayloadError(f"object is {envelope.object!r}, expected 'whatsapp_business_account'")

    batch = Batch()
    for e, entry in enumerate(envelope.entry):
        for c, change in enumerate(entry.changes):
            where = f"entry.{e}.changes.{c}"
            if change.field != "messages":
                batch.ignored_changes.append(f"{where}: field {change.field!r}")
                continue
            try:
                value = Value.model_validate(_scrub(change.value))
            except ValidationError as exc:
                raise PayloadError(f"not a WhatsApp webhook: {_describe(exc, where + '.value.')}") from None
            _flatten(value, batch)
    return batch


def _flatten(value: Value, batch: Batch) -> None:
    phone_number_id = value.metadata.phone_number_id
    for message in value.messages:
        contact = _contact(value.contacts, message)
        profile = contact.profile or Profile()
        new_wa_id, new_user_id = _identity_change(message)
        batch.messages.append(
            InboundMessage(
                phone_number_id=phone_number_id,
                wa_id=message.from_ or contact.wa_id,
                user_id=message.from_user_id or contact.user_id,
                parent_user_id=contact.parent_user_id,
                username=contact.username or profile.username,
                contact_name=profile.name,
                new_wa_id=new_wa_id,
                new_user_id=new_user_id,
                wa_message_id=message.id,
                type=message.type,
                body=message_body(message),
                contact_sent_at=_time(message.timestamp),
                payload=message.model_dump(by_alias=True, exclude_unset=True),
            )
        )
    for status in value.statuses:
        batch.statuses.append(
            StatusUpdate(
                phone_number_id=phone_number_id,
                wa_message_id=status.id,
                status=status.status,
                status_at=_time(status.timestamp),
                recipient_id=status.recipient_id,
                callback_data=status.biz_opaque_callback_data,
                errors=status.errors,
                payload=status.model_dump(by_alias=True, exclude_unset=True),
            )
        )
    batch.errors.extend(PlatformError(phone_number_id, error) for error in value.errors)
