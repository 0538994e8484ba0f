"""The pydantic models a WhatsApp webhook body is validated against, and the limits they hold it to.

webhook/payload.py validates the envelope, each entry and change, and then each item on its own
(a message, an echo, a status, a contact), so one item it cannot store never sinks the others.
Unknown fields pass through (`extra="allow"`) into the stored `payload`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from webhook.identity import identity_change

# Identifiers are stored in unique indexes, whose entries PostgreSQL caps at about 2.7 kB: Meta's are
# far shorter (a wamid is under 100 characters, a BSUID at most 131).
MAX_ID = 256
# Meta's own limit for biz_opaque_callback_data
MAX_CALLBACK_DATA = 512
# The last second a datetime (and PostgreSQL's timestamptz) can hold: 9999-12-31T23:59:59Z
MAX_UNIX_SECONDS = 253402300799


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


def _unix_seconds(value: str) -> str:
    # isdigit() alone admits "²" and other Unicode digits, which int() refuses
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) > MAX_UNIX_SECONDS:
        raise ValueError("must be Unix seconds as a string of ASCII digits, before the year 10000")
    return value


Id = Field(min_length=1, max_length=MAX_ID)


class Profile(_Model):
    name: str | None = None
    username: str | None = None


class Contact(_Model):
    # A phone number (wa_id), a business-scoped user id (user_id, BSUID), or both (reference addendum).
    wa_id: str | None = Field(default=None, max_length=MAX_ID)
    user_id: str | None = Field(default=None, max_length=MAX_ID)
    parent_user_id: str | None = Field(default=None, max_length=MAX_ID)
    username: str | None = None
    profile: Profile | None = None

    def names(self, wa_id: str | None, user_id: str | None) -> bool:
        return bool((wa_id and self.wa_id == wa_id) or (user_id and self.user_id == user_id))


class Message(_Model):
    id: str = Id
    from_: str | None = Field(default=None, alias="from", min_length=1, max_length=MAX_ID)
    from_user_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    timestamp: str
    type: str = Field(min_length=1, max_length=64)

    _check_timestamp = field_validator("timestamp")(_unix_seconds)

    @model_validator(mode="after")
    def _identified(self) -> Message:
        change = identity_change(self.type, getattr(self, "system", None))
        if not (self.from_ or self.from_user_id or change.previous_user_id or change.previous_wa_id):
            raise ValueError("a message needs 'from' (phone number) or 'from_user_id' (BSUID)")
        return self


class EchoMessage(_Model):
    """A smb_message_echoes item: a message the business sent from the WhatsApp Business app, to `to`."""

    id: str = Id
    from_: str | None = Field(default=None, alias="from", max_length=MAX_ID)
    to: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    to_user_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    timestamp: str
    type: str = Field(min_length=1, max_length=64)

    _check_timestamp = field_validator("timestamp")(_unix_seconds)

    @model_validator(mode="after")
    def _addressed(self) -> EchoMessage:
        if not (self.to or self.to_user_id):
            raise ValueError("an echo needs 'to' (phone number) or 'to_user_id' (BSUID)")
        return self


class Status(_Model):
    id: str = Id
    status: str = Field(min_length=1, max_length=64)
    timestamp: str
    recipient_id: str | None = Field(default=None, max_length=MAX_ID)
    biz_opaque_callback_data: str | None = Field(default=None, max_length=MAX_CALLBACK_DATA)
    errors: list[dict[str, Any]] | None = None

    _check_timestamp = field_validator("timestamp")(_unix_seconds)


class Metadata(_Model):
    phone_number_id: str = Id


class Value(_Model):
    """A `messages` change: its items stay raw here, each validated on its own."""

    metadata: Metadata
    contacts: list[Any] = []
    messages: list[Any] = []
    statuses: list[Any] = []
    errors: list[Any] = []


class Change(_Model):
    field: str
    value: dict[str, Any]


class Entry(_Model):
    changes: list[Any]


class Envelope(_Model):
    object: str
    entry: list[Any]
