"""The rows that travel between the worker's modules, typed (psycopg's `class_row` builds them).

Fields are the columns their query returns, by name: a query that changes its columns fails at
the first run, not where a missing key is read."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class Conversation:
    """`reply_load_conversation`: whom a send goes to, and whether the AI may answer."""

    id: int
    phone_number_id: str
    wa_id: str | None
    user_id: str | None
    contact_name: str | None
    ai_enabled: bool
    deleted_at: dt.datetime | None
    last_inbound_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class OutboundJob:
    """`outbound_job_start`: the reply job a run has just claimed."""

    id: int
    conversation_id: int
    inbound_message_id: int
    request_id: str
    attempts: int
    created_at: dt.datetime
    last_message_id: int | None  # the turn's newest message (worker.turns)
    rearmed: bool | None  # a message joined the turn since it was queued: its quiet window is open again


@dataclasses.dataclass(frozen=True)
class Inbound:
    """`reply_load_message`: the inbound message a reply answers."""

    id: int
    wa_message_id: str
    type: str
    body: str | None
    contact_sent_at: dt.datetime | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None  # the contact deleted it for everyone


ClaimOutcome = Literal["claimed", "resend", "already_sent", "failed", "in_progress", "awaiting_status"]


@dataclasses.dataclass(frozen=True)
class Claim:
    """`claim_send` (waypost_claim_send_v2): whether this run may call the Graph API, and with what:
    the message's type and, for any type but text, its Graph object (`payload`)."""

    message_id: int
    outcome: ClaimOutcome
    type: str
    body: str | None
    payload: dict[str, Any] | None
    send_attempts: int
