"""Validates a WhatsApp Cloud API webhook body and flattens it into the items Waypost stores.

Every entry x change x messages[]/statuses[]/errors[] is kept (and the message_echoes[] of a
smb_message_echoes change: webhook/changes.py): batches are normal. Unknown fields
and unknown message types pass through into `payload`. Each item is validated on its own: one we
cannot store is refused with its reason (`Batch.refused`) and never sinks the others. Only a body
that is not JSON, or not a WhatsApp webhook at all, is an error as a whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from typing import Any

from pydantic import ValidationError

from waypost.errors import BadRequest
from waypost.text import clean_text
from webhook.changes import CHANGE_TYPES, Echo, MessageChange, message_change
from webhook.consent import Preference, preferences_of
from webhook.identity import identity_change
from webhook.models import (
    MAX_ID,
    Change,
    Contact,
    EchoMessage,
    Entry,
    Envelope,
    Message,
    Metadata,
    Profile,
    Status,
    Value,
)
from webhook.template_events import FIELDS as TEMPLATE_CHANGE_FIELDS
from webhook.template_events import TemplateChange, template_change_of
from webhook.templates import FIELD as TEMPLATE_STATUS_FIELD
from webhook.templates import TemplateStatus, template_status_of

# Types whose text deserves an answer. Reactions, system notices and unsupported types do not.
REPLY_TYPES = frozenset({"text", "interactive", "button", "image", "video", "document"})
# Media answered even without a caption: the AI cannot read them yet, so the worker answers with
# WAYPOST_MEDIA_UNREADABLE_REPLY and leaves the message to an operator (stickers get nothing).
UNREADABLE_ANSWERED = frozenset({"image", "audio", "video", "document"})


class PayloadError(BadRequest):
    """the body is not a WhatsApp webhook that can be stored"""

    code = "BAD_PAYLOAD"  # with `refused`, each item's reason, when every item was refused


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
    change: MessageChange | None = None  # an edit or a revoke (the message itself then has no body)

    @property
    def reacted_to(self) -> str | None:
        """The Graph id of the message a reaction reacts to."""
        target = _field(self.payload.get("reaction"), "message_id") if self.type == "reaction" else None
        return target if isinstance(target, str) and target else None

    @property
    def needs_reply(self) -> bool:
        if self.type in REPLY_TYPES and self.body and self.body.strip():
            return True
        return self.type in UNREADABLE_ANSWERED


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


@dataclasses.dataclass(frozen=True)
class Refused:
    """An item of the webhook that cannot be stored, where it was, and why."""

    item: str  # e.g. entry.0.changes.0.value.messages.2
    id: str | None  # its Graph id, when it has a readable one
    reason: str

    def as_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        return f"{self.item}{f' ({self.id})' if self.id else ''}: {self.reason}"


def describe_refused(refused: list[Refused]) -> str:
    """The journal's error (and the operators' notification) for a webhook with refused items."""
    lines = [item.line() for item in refused[:20]]
    more = len(refused) - len(lines)
    return f"refused {len(refused)} item(s): " + "; ".join(lines) + (f" (and {more} more)" if more else "")


@dataclasses.dataclass
class Batch:
    messages: list[InboundMessage] = dataclasses.field(default_factory=list)
    statuses: list[StatusUpdate] = dataclasses.field(default_factory=list)
    errors: list[PlatformError] = dataclasses.field(default_factory=list)
    echoes: list[Echo] = dataclasses.field(default_factory=list)
    ignored_changes: list[str] = dataclasses.field(default_factory=list)
    refused: list[Refused] = dataclasses.field(default_factory=list)
    preferences: list[Preference] = dataclasses.field(default_factory=list)  # user_preferences (webhook/consent.py)
    # message_template_status_update (webhook/templates.py)
    template_statuses: list[TemplateStatus] = dataclasses.field(default_factory=list)
    # message_template_quality_update, template_category_update (webhook/template_events.py)
    template_changes: list[TemplateChange] = dataclasses.field(default_factory=list)

    @property
    def items(self) -> int:
        """How many items can be stored."""
        stored = len(self.messages) + len(self.statuses) + len(self.errors) + len(self.echoes) + len(self.preferences)
        return stored + len(self.template_statuses) + len(self.template_changes)

    def refuse(self, item: str, raw: Any, reason: str) -> None:
        graph_id = raw.get("id") if isinstance(raw, dict) else None
        shown = graph_id[:100] if isinstance(graph_id, str) else None
        self.refused.append(Refused(item, shown, reason))


def _describe(error: ValidationError, prefix: str = "") -> str:
    """Pydantic's errors as `where: what`, at most five of them."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{prefix}{where}: {item['msg']}" if where else item["msg"])
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _scrub(value: Any) -> Any:
    """Clean strings of what PostgreSQL cannot hold (the journal keeps the raw bytes)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


# How a parsed string can come to hold a NUL or a lone surrogate: a \u0000 or \uD800-\uDFFF escape, or
# a surrogate's UTF-8 bytes (json.loads decodes bytes with surrogatepass). A UTF-8 body with none of
# them, almost every webhook, skips _scrub's walk over every string (a third of a status's parsing).
_MAY_NEED_CLEANING = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")


def _not_a_number(constant: str) -> Any:
    raise PayloadError("body is not valid JSON: NaN and Infinity are not JSON numbers")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999: JSON allows it, jsonb cannot hold what float() makes of it
        _not_a_number(text)
    return number


_DECODER = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite)


def _time(unix_seconds: str) -> dt.datetime:  # validated by webhook.models._unix_seconds
    return dt.datetime.fromtimestamp(int(unix_seconds), tz=dt.UTC)


def _text(value: Any) -> str | None:
    """A string from a part of the payload that no model types: anything else counts as absent."""
    return value if isinstance(value, str) else None


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def message_body(message: Message | EchoMessage) -> str | None:
    """The human-readable text of a message, whatever its type (None when it has none, or when the
    part that should hold it is not a string)."""
    content = getattr(message, message.type, None)
    if not isinstance(content, dict) or message.type in CHANGE_TYPES:
        return None  # an edit's text belongs to the message it edits (message_change)
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


def _document(body: bytes) -> Any:
    """The body as JSON, its strings cleaned. The standard library's parser, because it lets a lone
    surrogate escape (`\\ud83d`) through to be cleaned in its one item, where pydantic's refuses the
    whole body."""
    try:
        encoding = json.detect_encoding(body)
        document = _DECODER.decode(body.decode(encoding, "surrogatepass"))  # as json.loads decodes bytes
        if encoding == "utf-8" and not _MAY_NEED_CLEANING.search(body):
            return document
        return _scrub(document)
    except PayloadError:
        raise
    except RecursionError:
        raise PayloadError("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise PayloadError(f"body is not valid JSON: {exc}") from None


def parse(body: bytes) -> Batch:
    try:
        envelope = Envelope.model_validate(_document(body))
    except ValidationError as exc:
        raise PayloadError(f"not a WhatsApp webhook: {_describe(exc)}") from None
    if envelope.object != "whatsapp_business_account":
        raise PayloadError(f"object is {envelope.object!r}, expected 'whatsapp_business_account'")

    batch = Batch()
    for e, raw_entry in enumerate(envelope.entry):
        try:
            entry = Entry.model_validate(raw_entry)
        except ValidationError as exc:
            batch.refuse(f"entry.{e}", raw_entry, _describe(exc, f"entry.{e}."))
            continue
        for c, raw_change in enumerate(entry.changes):
            where = f"entry.{e}.changes.{c}"
            try:
                change = Change.model_validate(raw_change)
            except ValidationError as exc:
                batch.refuse(where, raw_change, _describe(exc, f"{where}."))
                continue
            if change.field == "smb_message_echoes":
                _echoes(change.value, f"{where}.value", batch)
                continue
            if change.field == "user_preferences":
                _preferences(change.value, f"{where}.value", batch)
                continue
            if change.field == TEMPLATE_STATUS_FIELD:
                found = template_status_of(raw_entry, change.value)
                if isinstance(found, str):
                    batch.refuse(f"{where}.value", raw_change, f"{where}.value: {found}")
                else:
                    batch.template_statuses.append(found)
                continue
            if change.field in TEMPLATE_CHANGE_FIELDS:
                changed = template_change_of(change.field, raw_entry, change.value)
                if isinstance(changed, str):
                    batch.refuse(f"{where}.value", raw_change, f"{where}.value: {changed}")
                else:
                    batch.template_changes.append(changed)
                continue
            if change.field != "messages":
                batch.ignored_changes.append(f"{where}: field {change.field!r}")
                continue
            try:
                value = Value.model_validate(change.value)
            except ValidationError as exc:
                batch.refuse(where, None, _describe(exc, f"{where}.value."))
                continue
            _flatten(value, f"{where}.value", batch)
    return batch


def _valid_contacts(value: Value, where: str, batch: Batch) -> list[Contact]:
    contacts = []
    for i, raw in enumerate(value.contacts):
        try:
            contacts.append(Contact.model_validate(raw))
        except ValidationError as exc:
            batch.refuse(f"{where}.contacts.{i}", raw, _describe(exc, f"{where}.contacts.{i}."))
    return contacts


def _flatten(value: Value, where: str, batch: Batch) -> None:
    phone_number_id = value.metadata.phone_number_id
    contacts = _valid_contacts(value, where, batch)
    for i, raw in enumerate(value.messages):
        try:
            batch.messages.append(_inbound(phone_number_id, contacts, Message.model_validate(raw)))
        except (ValidationError, ValueError) as exc:
            batch.refuse(f"{where}.messages.{i}", raw, _reason(exc, f"{where}.messages.{i}."))
    for i, raw in enumerate(value.statuses):
        try:
            batch.statuses.append(_status(phone_number_id, Status.model_validate(raw)))
        except ValidationError as exc:
            batch.refuse(f"{where}.statuses.{i}", raw, _describe(exc, f"{where}.statuses.{i}."))
    for i, raw in enumerate(value.errors):
        if isinstance(raw, dict):
            batch.errors.append(PlatformError(phone_number_id, raw))
        else:
            batch.refuse(f"{where}.errors.{i}", None, f"{where}.errors.{i}: must be an object")


def _echoes(raw_value: dict[str, Any], where: str, batch: Batch) -> None:
    """A smb_message_echoes change: its `message_echoes` (Meta's reference; `messages` is read too)."""
    try:
        phone_number_id = Metadata.model_validate(raw_value.get("metadata")).phone_number_id
    except ValidationError as exc:
        batch.refuse(where, None, _describe(exc, f"{where}.metadata."))
        return
    key = "message_echoes" if "message_echoes" in raw_value else "messages"
    items = raw_value.get(key)
    for i, raw in enumerate(items if isinstance(items, list) else []):
        try:
            echo = EchoMessage.model_validate(raw)
        except ValidationError as exc:
            batch.refuse(f"{where}.{key}.{i}", raw, _describe(exc, f"{where}.{key}.{i}."))
            continue
        batch.echoes.append(
            Echo(
                phone_number_id=phone_number_id,
                wa_id=echo.to,
                user_id=echo.to_user_id,
                wa_message_id=echo.id,
                type=echo.type,
                body=message_body(echo),
                sent_at=_time(echo.timestamp),
                payload=echo.model_dump(by_alias=True, exclude_unset=True),
                change=message_change(echo.type, getattr(echo, echo.type, None)),
            )
        )


def _preferences(raw_value: Any, where: str, batch: Batch) -> None:
    """A user_preferences change: marketing stops and resumes (webhook/consent.py)."""
    found, refused, ignored = preferences_of(raw_value)
    batch.preferences.extend(found)
    for i, raw, reason in refused:
        item = where if i is None else f"{where}.user_preferences.{i}"
        batch.refuse(item, raw, f"{item}: {reason}")
    batch.ignored_changes.extend(f"{where}.{line}" for line in ignored)


def _reason(exc: Exception, prefix: str) -> str:
    return _describe(exc, prefix) if isinstance(exc, ValidationError) else f"{prefix.rstrip('.')}: {exc}"


def _inbound(phone_number_id: str, contacts: list[Contact], message: Message) -> InboundMessage:
    contact = _contact(contacts, message)
    profile = contact.profile or Profile()
    change = identity_change(message.type, getattr(message, "system", None))
    for name, identifier in vars(change).items():
        if identifier is not None and len(identifier) > MAX_ID:
            raise ValueError(f"system.{name} is longer than {MAX_ID} characters")
    # A system message is found by the identifiers it replaces: its from_user_id may be the new BSUID.
    user_id = change.previous_user_id or message.from_user_id or contact.user_id
    new_user_id = change.new_user_id if change.new_user_id != user_id else None
    return InboundMessage(
        phone_number_id=phone_number_id,
        wa_id=message.from_ or change.previous_wa_id or contact.wa_id,
        user_id=user_id,
        parent_user_id=contact.parent_user_id,
        username=contact.username or profile.username,
        contact_name=profile.name,
        new_wa_id=change.new_wa_id,
        new_user_id=new_user_id,
        wa_message_id=message.id,
        type=message.type,
        body=message_body(message),
        contact_sent_at=_time(message.timestamp),
        payload=message.model_dump(by_alias=True, exclude_unset=True),
        change=message_change(message.type, getattr(message, message.type, None)),
    )


def _status(phone_number_id: str, status: Status) -> StatusUpdate:
    return StatusUpdate(
        phone_number_id=phone_number_id,
        wa_message_id=status.id,
        status=status.status,
        status_at=_time(status.timestamp),
        recipient_id=status.recipient_id,
        callback_data=status.biz_opaque_callback_data,
        errors=status.errors,
        payload=status.model_dump(by_alias=True, exclude_unset=True),
    )
