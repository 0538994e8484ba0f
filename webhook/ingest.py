"""Writes a webhook to the database: the journal row first, then every item in one transaction.

An item the database refuses (a value out of its range, a constraint) must not sink the others:
the batch is then stored again item by item, each in a savepoint, and the refused ones are named in
the journal's `error` and in a `webhook_item_refused` notification.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg.types.json import Jsonb

from waypost.consent_words import ConsentWords
from waypost.db import DictConnection, DictPool, execute, fetch_one, fetch_value
from waypost.signing import Verdict
from webhook import consent
from webhook.changes import Echo
from webhook.media import media_of
from webhook.payload import Batch, InboundMessage, PlatformError, Refused, StatusUpdate, describe_refused
from webhook.template_events import TemplateChange, apply_template_change
from webhook.templates import TemplateStatus, apply_template_status
from worker.tasks import defer_download, defer_reply

logger = logging.getLogger(__name__)


# What a POST with a missing or wrong signature keeps of its body: evidence, not storage.
REFUSED_BODY_PREFIX = 1024
# Errors that belong to one item's values, and would come back on every delivery. Not a unique
# violation: that is a race with another delivery, which Meta's retry (after a 500) settles.
ITEM_ERRORS = (
    psycopg.DataError,
    psycopg.errors.NotNullViolation,
    psycopg.errors.CheckViolation,
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.RaiseException,
)


@dataclasses.dataclass
class IngestResult:
    new_messages: int = 0
    duplicate_messages: int = 0
    jobs: int = 0
    statuses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    refused: list[Refused] = dataclasses.field(default_factory=list)
    # (phone_number_id, pricing) of each status that priced a message: counted once committed
    priced: list[tuple[str, dict[str, object]]] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, object]:
        summary: dict[str, object] = {
            "messages": self.new_messages,
            "duplicates": self.duplicate_messages,
            "jobs": self.jobs,
            "statuses": dict(self.statuses),
        }
        if self.refused:
            summary["refused"] = [refused.as_dict() for refused in self.refused]
        return summary


async def journal(
    pool: DictPool,
    request_id: str,
    body: bytes | None,
    signature: Verdict,
    error: str | None = None,
) -> int:
    """Commit the raw body on its own, so it survives whatever happens next. A body whose signature
    is missing or invalid is kept as its size, its SHA-256 and its first bytes only."""
    kept = body[:REFUSED_BODY_PREFIX] if body is not None and signature in ("missing", "invalid") else body
    async with pool.connection() as conn:
        event_id = await fetch_value(
            conn,
            "webhook_event_insert",
            request_id=request_id,
            body=kept,
            body_size=len(body) if body is not None else None,
            body_sha256=hashlib.sha256(body).digest() if body is not None else None,
            signature=signature,
            error=error,
        )
    return int(event_id)


async def record_error(pool: DictPool, event_id: int, error: str) -> None:
    async with pool.connection() as conn:
        await execute(conn, "webhook_event_error", id=event_id, error=error)


def lock_order(message: InboundMessage | Echo) -> tuple[str, str, str, float]:
    # One order for every request: concurrent batches lock conversations without deadlocking,
    # and messages of one conversation get their jobs (hence their replies) in send order.
    at = message.contact_sent_at if isinstance(message, InboundMessage) else message.sent_at
    return (message.phone_number_id, message.wa_id or "", message.user_id or "", at.timestamp())


Store = Callable[[DictConnection, IngestResult], Awaitable[None]]
# A turn's quiet window and maximum wait, in seconds (WAYPOST_TURN_*); no window: one reply per message
TurnWindow = tuple[float, float]
NO_WINDOW: TurnWindow = (0.0, 1.0)


def _steps(
    batch: Batch,
    request_id: str,
    pause_ai_on_echo: bool,
    words: ConsentWords | None = None,
    window: TurnWindow = NO_WINDOW,
) -> list[tuple[str, str | None, Store]]:
    """Every item of the batch as (kind, Graph id, how to store it), in locking order."""
    steps: list[tuple[str, str | None, Store]] = []
    items: list[InboundMessage | Echo] = [*batch.messages, *batch.echoes]
    for message in sorted(items, key=lock_order):
        if isinstance(message, Echo):
            echo = functools.partial(_ingest_echo, echo=message, pause_ai=pause_ai_on_echo)
            steps.append(("echo", message.wa_message_id, echo))
            continue
        store = functools.partial(_ingest_message, message=message, request_id=request_id, words=words, window=window)
        steps.append(("message", message.wa_message_id, store))
    for status in sorted(batch.statuses, key=lambda s: (s.wa_message_id, s.status)):
        steps.append(("status", status.wa_message_id, functools.partial(_apply_status, status=status)))
    for preference in batch.preferences:
        steps.append(("user_preference", None, functools.partial(_apply_preference, preference=preference)))
    for update in batch.template_statuses:
        steps.append(("template_status", None, functools.partial(_apply_template_status, update=update)))
    for template_change in batch.template_changes:
        apply_change = functools.partial(_apply_template_change, change=template_change)
        steps.append((f"template_{template_change.kind}", None, apply_change))
    for platform_error in batch.errors:
        steps.append(("error", None, functools.partial(_notify_platform_error, platform_error=platform_error)))
    return steps


async def process(
    pool: DictPool,
    event_id: int,
    batch: Batch,
    request_id: str,
    *,
    pause_ai_on_echo: bool = True,
    words: ConsentWords | None = None,
    window: TurnWindow = NO_WINDOW,
) -> IngestResult:
    """Store every item of the batch and mark the journal row processed, in one transaction.
    `pause_ai_on_echo`: a message sent from the phone app pauses its conversation's AI; `words`:
    the opt-out and opt-in words a text message may be; `window`: the turns' quiet window and
    maximum wait in seconds (README "Turns")."""
    steps = _steps(batch, request_id, pause_ai_on_echo, words, window)
    try:
        return await _store(pool, event_id, batch, steps, isolate=False)
    except ITEM_ERRORS as exc:
        logger.warning("webhook event %s: an item was refused (%s); storing the items one by one", event_id, exc)
        return await _store(pool, event_id, batch, steps, isolate=True)


async def _store(
    pool: DictPool, event_id: int, batch: Batch, steps: list[tuple[str, str | None, Store]], *, isolate: bool
) -> IngestResult:
    result = IngestResult(refused=list(batch.refused))
    async with pool.connection() as conn, conn.transaction():
        for kind, graph_id, step in steps:
            if not isolate:
                await step(conn, result)
                continue
            try:
                async with conn.transaction():  # a savepoint: a refused item leaves the others alone
                    await step(conn, result)
            except ITEM_ERRORS as exc:
                reason = f"the database refused this {kind}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                result.refused.append(Refused(kind, graph_id[:100] if graph_id else None, reason))
        error = None
        if result.refused:
            error = describe_refused(result.refused)
            await notify_refused(conn, result.refused)
        await execute(conn, "webhook_event_processed", id=event_id, error=error)
    return result


async def notify_refused(conn: DictConnection, refused: list[Refused]) -> None:
    """Tell the operators what Meta sent that could not be stored, once: a refused batch is 400, and
    Meta delivers it again for days."""
    intro = "WhatsApp sent items Waypost could not store; the journal keeps them. "
    body = intro + describe_refused(refused)
    await execute(conn, "notification_insert_once", kind="webhook_item_refused", body=body)


async def record_refused(pool: DictPool, event_id: int, refused: list[Refused]) -> None:
    """A webhook whose every item was refused: the journal says why, the operators are told."""
    async with pool.connection() as conn, conn.transaction():
        await execute(conn, "webhook_event_error", id=event_id, error=describe_refused(refused))
        await notify_refused(conn, refused)


async def _apply_status(conn: DictConnection, result: IngestResult, status: StatusUpdate) -> None:
    outcome = await fetch_value(
        conn,
        "apply_message_status",
        wa_message_id=status.wa_message_id,
        status=status.status,
        status_at=status.status_at,
        recipient_id=status.recipient_id,
        callback_data=status.callback_data,
        errors=Jsonb(status.errors) if status.errors is not None else None,
        payload=Jsonb(status.payload),
    )
    result.statuses[outcome] += 1
    pricing = status.payload.get("pricing")
    if outcome in ("applied", "stale") and isinstance(pricing, dict):
        result.priced.append((status.phone_number_id, pricing))
    logger.info("status %s for %s: %s", status.status, status.wa_message_id, outcome)


async def _notify_platform_error(conn: DictConnection, result: IngestResult, platform_error: PlatformError) -> None:
    error = json.dumps(platform_error.error, ensure_ascii=False)
    body = f"WhatsApp reported an error for number {platform_error.phone_number_id}: {error}"
    await execute(conn, "notification_insert", conversation_id=None, message_id=None, kind="platform_error", body=body)


async def _apply_preference(conn: DictConnection, result: IngestResult, preference: consent.Preference) -> None:
    applied = await consent.apply_preference(conn, preference)
    logger.info("user_preferences %s: %s", preference.value, "applied" if applied else "already recorded")


async def _apply_template_status(conn: DictConnection, result: IngestResult, update: TemplateStatus) -> None:
    await apply_template_status(conn, update)


async def _apply_template_change(conn: DictConnection, result: IngestResult, change: TemplateChange) -> None:
    await apply_template_change(conn, change)


async def _ingest_message(
    conn: DictConnection,
    result: IngestResult,
    message: InboundMessage,
    request_id: str,
    words: ConsentWords | None = None,
    window: TurnWindow = NO_WINDOW,
) -> None:
    row = await fetch_one(
        conn,
        "ingest_inbound_message",
        phone_number_id=message.phone_number_id,
        wa_id=message.wa_id,
        user_id=message.user_id,
        parent_user_id=message.parent_user_id,
        username=message.username,
        contact_name=message.contact_name,
        new_wa_id=message.new_wa_id,
        new_user_id=message.new_user_id,
        wa_message_id=message.wa_message_id,
        type=message.type,
        body=message.body,
        payload=Jsonb(message.payload),
        contact_sent_at=message.contact_sent_at,
        needs_reply=await _needs_reply(conn, message),
        request_id=request_id,
        quiet_seconds=window[0],
        max_wait_seconds=window[1],
        reply_task=None,  # the reply job, if any, deferred below through procrastinate (`defer`)
        reply_queue=None,
    )
    if not row["created"]:
        result.duplicate_messages += 1
        logger.info("duplicate message %s ignored", message.wa_message_id)
        return
    result.new_messages += 1
    await _apply_changes(conn, row["message_id"], message)
    await _queue_media_download(conn, row["message_id"], message, request_id)
    consent_kind = words.match(message.type, message.body) if words is not None else None
    if consent_kind is not None:
        await consent.record_keyword(conn, row["message_id"], consent_kind)
    outbound_job_id = row["outbound_job_id"]
    if outbound_job_id is None:
        logger.info("stored message %s type=%s, no reply due", message.wa_message_id, message.type)
        return
    if not row["defer"]:  # the turn's quiet window: the worker's turn clock queues its reply
        logger.info("stored message %s in turn %s, gathering", message.wa_message_id, outbound_job_id)
        return
    # Same connection, same transaction: the job row and the queue row commit or vanish together,
    # and procrastinate's NOTIFY fires at our COMMIT.
    procrastinate_job_id = await defer_reply(
        conn, outbound_job_id=outbound_job_id, conversation_id=row["conversation_id"], request_id=request_id
    )
    result.jobs += 1
    logger.info(
        "stored message %s, outbound job %s deferred as procrastinate job %s",
        message.wa_message_id,
        outbound_job_id,
        procrastinate_job_id,
    )


async def _needs_reply(conn: DictConnection, message: InboundMessage) -> bool:
    """A reaction is answered when it reacts to a question of the AI (it is the answer); any other
    reaction, or one taken back (no emoji), is only shown to the operators."""
    target = message.reacted_to
    if message.type != "reaction" or not target or not (message.body or "").strip():
        return message.needs_reply
    params = {"phone_number_id": message.phone_number_id, "wa_id": message.wa_id, "user_id": message.user_id}
    # Two reactions to one question in flight at once (👍 changed to ❤ within a second) decide one
    # after the other: the second sees the first's reply job and is not answered again.
    await execute(conn, "reaction_lock_contact", **params)
    return bool(await fetch_value(conn, "reaction_answers_ai_question", target=target, **params))


async def _queue_media_download(
    conn: DictConnection, message_id: int, message: InboundMessage, request_id: str
) -> None:
    """A media message's file is fetched by a job of its own, committed with the message: never in
    the request, and a failed download never loses the message."""
    media = media_of(message)
    if media is None:
        return
    media_id = await fetch_value(
        conn,
        "media_insert",
        message_id=message_id,
        wa_media_id=media.wa_media_id,
        kind=message.type,
        mime_type=media.mime_type,
        sha256=media.sha256,
        filename=media.filename,
        voice=media.voice,
    )
    job_id = await defer_download(conn, media_id=media_id, request_id=request_id)
    logger.info("media %s of message %s queued for download as job %s", media_id, message.wa_message_id, job_id)


async def _apply_changes(conn: DictConnection, message_id: int, message: InboundMessage | Echo) -> None:
    """An edit or revoke changes the message it names; any other message may have edits or revokes
    that arrived before it (Meta does not promise order), applied now."""
    change = message.change
    if change is None:
        await execute(conn, "apply_message_changes", wa_message_id=message.wa_message_id)
        return
    outcome = await fetch_value(
        conn,
        "record_message_change",
        event_message_id=message_id,
        kind=change.kind,
        original_wa_message_id=change.original_wa_message_id,
        body=change.body,
        changed_at=message.contact_sent_at if isinstance(message, InboundMessage) else message.sent_at,
    )
    logger.info("%s of %s by %s: %s", change.kind, change.original_wa_message_id, message.wa_message_id, outcome)


# What the owner does from the phone app without answering: a reaction, or an edit or deletion of a
# message already sent. These never pause the AI; a reply of any other kind does.
QUIET_ECHO_TYPES = frozenset({"reaction", "edit", "revoke"})


async def _ingest_echo(conn: DictConnection, result: IngestResult, echo: Echo, pause_ai: bool) -> None:
    """A message the business sent from the WhatsApp Business app: shown as sent from the phone app,
    and (a setting) the conversation's AI pauses so the owner and the AI never talk over each other."""
    row = await fetch_one(
        conn,
        "ingest_echo",
        phone_number_id=echo.phone_number_id,
        wa_id=echo.wa_id,
        user_id=echo.user_id,
        wa_message_id=echo.wa_message_id,
        type=echo.type,
        body=echo.body,
        payload=Jsonb(echo.payload),
        sent_at=echo.sent_at,
        pause_ai=pause_ai and echo.type not in QUIET_ECHO_TYPES,
    )
    if not row["created"]:
        result.duplicate_messages += 1
        logger.info("duplicate echo %s ignored", echo.wa_message_id)
        return
    result.new_messages += 1
    await _apply_changes(conn, row["message_id"], echo)
    if echo.type not in QUIET_ECHO_TYPES:  # a person answered: a handed-over conversation waits no more
        await execute(conn, "handover_phone_answered", conversation_id=row["conversation_id"])
    paused = " (AI paused)" if row["paused"] else ""
    logger.info("stored echo %s type=%s from the phone app%s", echo.wa_message_id, echo.type, paused)
