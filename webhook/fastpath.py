"""The common webhook in one statement: plain inbound messages and statuses.

Almost every POST Meta sends is one text message or a few delivery statuses. Those are stored, their
replies queued and the journal row written by one call of `waypost_store_webhook_v3`, in autocommit:
one round trip and one commit, where the general path (webhook/ingest.py) journals first, then stores
item by item in a second transaction. POSTs that come while the web process's webhook statements are
all busy are stored together (webhook/group_commit.py). Anything else (media, edits, reactions,
consent words, echoes, template events, platform errors, refused items) takes the general path, which
owns those rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

from psycopg.types.json import Jsonb

from waypost.consent_words import ConsentWords
from waypost.signing import Verdict
from webhook.group_commit import Event, GroupCommit, Order
from webhook.ingest import IngestResult, lock_order
from webhook.media import media_of
from webhook.payload import Batch, InboundMessage, StatusUpdate
from worker.tasks import SEND_REPLY

logger = logging.getLogger(__name__)

# What a plain batch may hold (a change Waypost does not store is only counted).
PLAIN_FIELDS = frozenset({"messages", "statuses", "ignored_changes"})


def plain(batch: Batch, words: ConsentWords | None) -> bool:
    """True when every item of the batch is a plain inbound message or a status."""
    # Every other kind of item, those Batch gains later included, is the general path's.
    if any(getattr(batch, field.name) for field in dataclasses.fields(batch) if field.name not in PLAIN_FIELDS):
        return False
    if not (batch.messages or batch.statuses):
        return False
    return all(_plain_message(message, words) for message in batch.messages)


def _plain_message(message: InboundMessage, words: ConsentWords | None) -> bool:
    # a reaction may answer the AI's question (ingest._needs_reply); a file needs its download job; an
    # edit or revoke changes another message; a consent word is recorded: all the general path's
    if message.change is not None or message.type == "reaction" or media_of(message) is not None:
        return False
    return words is None or words.match(message.type, message.body) is None


def _message(message: InboundMessage) -> dict[str, Any]:
    fields = {
        "phone_number_id": message.phone_number_id,
        "wa_id": message.wa_id,
        "user_id": message.user_id,
        "parent_user_id": message.parent_user_id,
        "username": message.username,
        "contact_name": message.contact_name,
        "new_wa_id": message.new_wa_id,
        "new_user_id": message.new_user_id,
        "wa_message_id": message.wa_message_id,
        "type": message.type,
        "body": message.body,
        "payload": message.payload,
        "contact_sent_at": message.contact_sent_at.isoformat(),
        "needs_reply": message.needs_reply,
    }
    return _present(fields)


def _status(status: StatusUpdate) -> dict[str, Any]:
    fields = {
        "wa_message_id": status.wa_message_id,
        "status": status.status,
        "status_at": status.status_at.isoformat(),
        "recipient_id": status.recipient_id,
        "callback_data": status.callback_data,
        "errors": status.errors,
        "payload": status.payload,
    }
    return _present(fields)


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields with a value: a key left out is NULL in jsonb_to_record, a JSON null may not be."""
    return {key: value for key, value in fields.items() if value is not None}


def event_of(request_id: str, body: bytes, signature: Verdict, batch: Batch) -> tuple[Event, Order, list[StatusUpdate]]:
    """A plain batch as the webhook statements take it, its place in a group, and its statuses in the
    order of the statement's outcomes."""
    statuses = sorted(batch.statuses, key=lambda s: (s.wa_message_id, s.status))
    messages = sorted(batch.messages, key=lock_order)
    event = {
        "request_id": request_id,
        "body": body,
        "body_sha256": hashlib.sha256(body).digest(),
        "signature": signature,
        "messages": Jsonb([_message(message) for message in messages]),
        "statuses": Jsonb([_status(status) for status in statuses]),
    }
    # in a group, webhooks with messages first, in their locking order, then statuses by message
    order: Order = (0, lock_order(messages[0])) if messages else (1, (statuses[0].wa_message_id, "", "", 0.0))
    return event, order, statuses


async def store(
    groups: GroupCommit, request_id: str, body: bytes, signature: Verdict, batch: Batch
) -> tuple[int, IngestResult]:
    """The journal row's id and what was stored. Raises what the database raised: nothing is written
    then, and the caller journals the body apart."""
    event, order, statuses = event_of(request_id, body, signature, batch)
    row = await groups.store(event, order)
    result = IngestResult(
        new_messages=row["new_messages"], duplicate_messages=row["duplicate_messages"], jobs=len(row["job_ids"])
    )
    for job_id, outbound_job_id in zip(row["job_ids"], row["outbound_job_ids"], strict=True):
        # the line procrastinate's own defer writes, so a job is traced from the webhook as before
        logger.info(
            "Deferred 1 job: %s[%s] for outbound job %s",
            SEND_REPLY,
            job_id,
            outbound_job_id,
            extra={"job_id": str(job_id)},
        )
    for status, outcome in zip(statuses, row["status_outcomes"], strict=True):
        result.statuses[outcome] += 1
        pricing = status.payload.get("pricing")
        if outcome in ("applied", "stale") and isinstance(pricing, dict):
            result.priced.append((status.phone_number_id, pricing))
    return int(row["event_id"]), result
