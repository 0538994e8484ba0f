"""The inbox's reads and actions on the database, shared by the JSON API and the pages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import psycopg
from psycopg.types.json import Jsonb

from waypost import kinds
from waypost.attachments import stage_file
from waypost.db import DictConnection, DictPool, execute, fetch_all, fetch_one, fetch_optional, fetch_value
from waypost.errors import (
    BadFilter,
    BadInput,
    BadTime,
    BlockPending,
    Conflict,
    ContactHasLiveConversation,
    NotFound,
    WindowClosed,
)
from waypost.media_store import MediaStore
from waypost.text import unfit
from worker.tasks import defer_block, defer_operator_send, defer_read_receipt, operator_key

Filter = Literal["unread", "ai_paused", "waiting", "send_failed", "window_closed"]
FILTERS: tuple[Filter, ...] = ("unread", "ai_paused", "waiting", "send_failed", "window_closed")
MESSAGES_SHOWN = 300
MAX_SNOOZE = dt.timedelta(days=30)
MAX_ROW_ID = 2**63 - 1  # bigint


def row_id(value: object, what: str) -> int:
    """A path's id as a database id: one past bigint names nothing, like one never used."""
    number = int(str(value))
    if not 0 < number <= MAX_ROW_ID:
        raise NotFound.of(what)
    return number


def check_text(value: str, field: str) -> str:
    """Operator input is refused, not cleaned, when it holds what cannot be stored or sent."""
    reason = unfit(value)
    if reason:
        raise BadInput(f"{field} {reason}")
    return value


async def list_conversations(
    pool: DictPool, *, q: str | None, filter: str | None, deleted: bool, limit: int = 200
) -> list[dict[str, Any]]:
    if filter is not None and filter not in FILTERS:
        raise BadFilter(f"filter must be one of {', '.join(FILTERS)}")
    q = check_text(q or "", "the search").strip()[:100] or None
    digits = re.sub(r"\D", "", q or "")
    async with pool.connection() as conn:
        return await fetch_all(
            conn, "inbox_conversations", q=q, digits=digits, filter=filter, deleted=deleted, limit=min(limit, 500)
        )


async def conversation(pool: DictPool, conversation_id: int) -> dict[str, Any]:
    async with pool.connection() as conn:
        found = await fetch_optional(conn, "inbox_conversation", conversation_id=conversation_id)
    if found is None:
        raise NotFound.of("conversation")
    return found


async def consent(pool: DictPool, conversation_id: int) -> dict[str, Any]:
    """The contact's marketing opt-out and block state, and the latest block request (migration 0018)."""
    async with pool.connection() as conn:
        return await fetch_one(conn, "consent_of_conversation", conversation_id=conversation_id)


async def change_block(
    pool: DictPool, conversation_id: int, *, action: Literal["block", "unblock"], operator_id: int, request_id: str
) -> dict[str, Any]:
    """Queue an operator's block or unblock (the worker asks Meta), with its request row."""
    async with pool.connection() as conn, conn.transaction():
        row = await fetch_optional(
            conn,
            "block_request_insert",
            conversation_id=conversation_id,
            action=action,
            operator_id=operator_id,
            request_id=request_id,
        )
        if row is None:
            await conversation(pool, conversation_id)  # 404 when it does not exist at all
            raise BlockPending()
        await defer_block(conn, block_request_id=row["id"], request_id=request_id)
    return row


async def messages(pool: DictPool, conversation_id: int) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await fetch_all(conn, "inbox_messages", conversation_id=conversation_id, limit=MESSAGES_SHOWN)


async def mark_read(pool: DictPool, conversation_id: int, *, receipt: bool = False, request_id: str = "") -> None:
    """An operator opened the conversation: nothing in it is unread for the operators any more, and
    with `receipt` (WAYPOST_READ_RECEIPTS=operator_open) its messages not yet marked read on the
    contact's phone are claimed, and the worker told to mark the latest read (once, whoever opens)."""
    async with pool.connection() as conn, conn.transaction():
        await execute(conn, "inbox_mark_read", conversation_id=conversation_id)
        if receipt:
            message_id = await fetch_value(conn, "read_receipt_claim", conversation_id=conversation_id)
            if message_id is not None:
                await defer_read_receipt(conn, message_id=message_id, request_id=request_id)


async def _update_conversation(pool: DictPool, name: str, conversation_id: int, **params: Any) -> None:
    async with pool.connection() as conn:
        updated = await fetch_optional(conn, name, conversation_id=conversation_id, **params)
    if updated is None:
        await conversation(pool, conversation_id)  # 404 when it does not exist at all
        raise Conflict()


async def set_ai(pool: DictPool, conversation_id: int, enabled: bool, operator_id: int) -> None:
    """Resume the AI (hand the conversation back to it), or pause it: the operator takes it over."""
    await _update_conversation(pool, "inbox_set_ai", conversation_id, enabled=enabled, operator_id=operator_id)


async def delete(pool: DictPool, conversation_id: int) -> None:
    await _update_conversation(pool, "inbox_delete_conversation", conversation_id)


async def restore(pool: DictPool, conversation_id: int) -> None:
    try:
        await _update_conversation(pool, "inbox_restore_conversation", conversation_id)
    except psycopg.errors.UniqueViolation:
        raise ContactHasLiveConversation() from None


async def answered(conn: DictConnection, conversation_id: int, operator_id: int) -> None:
    """An operator's message was queued: they own the conversation if its AI is paused (a handed-over
    one no longer waits for a person; README "Handing over"). In the queueing transaction."""
    await execute(conn, "handover_operator_answered", conversation_id=conversation_id, operator_id=operator_id)


@dataclasses.dataclass(frozen=True)
class Queued:
    message: dict[str, Any]
    duplicate: bool


@dataclasses.dataclass(frozen=True)
class Attachment:
    """An operator's file, checked (waypost.attachments.check_file), read a chunk at a time."""

    kind: str
    mime_type: str
    filename: str | None
    chunks: AsyncIterator[bytes]


async def send(
    pool: DictPool,
    conversation_id: int,
    *,
    operator_id: int,
    body: str | None,
    client_key: str | None,
    pause_ai: bool,
    request_id: str,
    kind: str = "text",
    payload: dict[str, Any] | None = None,
    reply_to: int | None = None,
    attachment: Attachment | None = None,
    media_store: MediaStore | None = None,
) -> Queued:
    """Queue an operator message of any kind and defer its send, in one transaction: a resubmitted
    form (same client_key) finds it and stores nothing again. A file is written to the media store
    first (staged), outside that transaction, which only links it: a 100 MB upload holds no lock
    that the contact's webhooks wait for."""
    if body is not None:
        check_text(body, "the message")
    key = operator_key(client_key or uuid.uuid4().hex)
    staged = await _stage(pool, media_store, attachment, key) if attachment is not None else None
    linked = False
    try:
        async with pool.connection() as conn, conn.transaction():
            row = await fetch_one(
                conn,
                "inbox_queue_operator_message",
                conversation_id=conversation_id,
                idempotency_key=key,
                type=kind,
                body=body,
                payload=Jsonb(payload) if payload is not None else None,
                reply_to_message_id=reply_to,
                operator_id=operator_id,
                pause_ai=pause_ai,
            )
            outcome = row["outcome"]
            if outcome == "conversation_missing":
                raise NotFound.of("live conversation")
            if outcome == "window_closed":
                raise WindowClosed()
            if outcome == "reply_to_missing":
                raise NotFound.of("message replied to")
            if outcome == "queued":
                if attachment is not None:
                    params = {"media_id": staged, "message_id": row["message_id"]}
                    if staged is None or await fetch_optional(conn, "media_link_staged", **params) is None:
                        raise Conflict("the file was not stored: send it again")
                    linked = True
                if kind != "reaction":  # a reaction is not an answer
                    await answered(conn, conversation_id, operator_id)
                await defer_operator_send(
                    conn, message_id=row["message_id"], conversation_id=conversation_id, request_id=request_id
                )
            message = await fetch_one(conn, "inbox_message", message_id=row["message_id"])
    finally:
        if staged is not None and not linked and media_store is not None:
            with anyio.CancelScope(shield=True):  # a client that hung up still leaves nothing behind
                await media_store.discard_staged(pool, staged)
    return Queued(message, duplicate=outcome == "duplicate")


async def _stage(pool: DictPool, media_store: MediaStore | None, attachment: Attachment, key: str) -> int | None:
    """The staged file's media id; None when this key's message exists (a resubmitted form: its file
    is stored already and nothing is written again)."""
    async with pool.connection() as conn:
        if await fetch_optional(conn, "reply_find_send", idempotency_key=key) is not None:
            return None
    assert media_store is not None, "a file needs the media store"
    return await stage_file(
        pool,
        media_store,
        kind=attachment.kind,
        mime_type=attachment.mime_type,
        filename=attachment.filename,
        chunks=attachment.chunks,
    )


async def react(
    pool: DictPool,
    conversation_id: int,
    message_id: int,
    *,
    operator_id: int,
    emoji: str,
    client_key: str | None,
    request_id: str,
) -> Queued:
    """React to a contact's message (an empty emoji removes the reaction), sent like any message."""
    async with pool.connection() as conn:
        target = await fetch_optional(
            conn, "inbox_reaction_target", conversation_id=conversation_id, message_id=message_id
        )
    if target is None:
        raise NotFound.of("contact's message")
    try:
        payload = kinds.check_reaction({"message_id": target["wa_message_id"], "emoji": check_text(emoji, "the emoji")})
    except kinds.InvalidMessage as exc:
        raise BadInput(str(exc)) from None
    return await send(
        pool,
        conversation_id,
        operator_id=operator_id,
        body=payload["emoji"],
        client_key=client_key,
        pause_ai=False,  # a reaction is not an answer
        request_id=request_id,
        kind="reaction",
        payload=payload,
    )


async def notifications(
    pool: DictPool, *, include_read: bool = False, include_snoozed: bool = False, limit: int = 200
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The notifications and their counts, in one transaction: both see the same now(), so a snooze
    that ends between the two reads cannot make them disagree."""
    async with pool.connection() as conn, conn.transaction():
        rows = await fetch_all(
            conn,
            "inbox_notifications",
            include_read=include_read,
            include_snoozed=include_snoozed,
            limit=min(limit, 500),
        )
        return rows, await fetch_one(conn, "inbox_notification_counts")


async def notification_counts(pool: DictPool) -> dict[str, Any]:
    async with pool.connection() as conn:
        return await fetch_one(conn, "inbox_notification_counts")


async def mark_notification_read(pool: DictPool, notification_id: int) -> None:
    async with pool.connection() as conn:
        found = await fetch_optional(conn, "inbox_notification_read", notification_id=notification_id)
    if found is None:
        raise NotFound.of("notification")


async def snooze(pool: DictPool, notification_id: int, until: dt.datetime | None) -> None:
    if until is not None:
        if until.tzinfo is None:
            raise BadTime("give the snooze time with its UTC offset, e.g. 2026-11-24T18:00:00Z")
        now = dt.datetime.now(dt.UTC)
        if until <= now:
            raise BadTime("the snooze time must be in the future")
        if until > now + MAX_SNOOZE:
            raise BadTime("a notification can be snoozed for 30 days at most")
    async with pool.connection() as conn:
        found = await fetch_optional(conn, "inbox_notification_snooze", notification_id=notification_id, until=until)
    if found is None:
        raise NotFound.of("notification")
