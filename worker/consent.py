"""Consent in the worker: the confirmation that answers an opt-out or opt-in word (the reply to that
message, through the normal claim/send path: once), and the `change_block` task that blocks or
unblocks a contact through Meta's block-users API (docs/whatsapp.md "Blocking users")."""

from __future__ import annotations

import functools
import logging
from typing import Any

import httpx
import procrastinate
from psycopg.types.json import Jsonb

from waypost.consent_words import ConsentWords, confirmation
from waypost.db import Pool, execute, fetch_optional
from waypost.logs import log_context
from waypost.settings import Settings
from worker.graph import classify_response
from worker.queue import app
from worker.resources import resources_of
from worker.tasks import CHANGE_BLOCK, REPLY_QUEUE

logger = logging.getLogger(__name__)

NO_CONFIRMATION = "an opt-out or opt-in word, and its confirmation setting is empty"


async def consent_confirmation(pool: Pool, settings: Settings, message_ids: list[int]) -> str | None:
    """The answer to inbound messages (a turn's) of which one was an opt-out or opt-in word, in the
    word's language ("" when its setting is empty), or None: other messages, answered as usual."""
    async with pool.connection() as conn:
        row = await fetch_optional(conn, "consent_keyword_of_message", message_ids=message_ids)
    return confirmation_of(settings, row)


def confirmation_of(settings: Settings, row: dict[str, Any] | None) -> str | None:
    """consent_confirmation, from the word's row already read (`consent_keyword_of_message`'s kind,
    type and body; None: no such word in the turn)."""
    if row is None:
        return None
    found = _words(settings.opt_out_words, settings.opt_in_words).find(row["type"], row["body"])
    language = found.language if found is not None else ""
    if row["kind"] == "opt_out":
        return confirmation(settings.opt_out_confirmations, settings.opt_out_confirmation, language)
    return confirmation(settings.opt_in_confirmations, settings.opt_in_confirmation, language)


@functools.lru_cache(maxsize=4)
def _words(opt_out: tuple[str, ...], opt_in: tuple[str, ...]) -> ConsentWords:
    return ConsentWords.of(opt_out, opt_in)


@app.task(name=CHANGE_BLOCK, queue=REPLY_QUEUE, pass_context=True)
async def change_block(context: procrastinate.JobContext, block_request_id: int, request_id: str) -> None:
    """Send one operator's block or unblock to Meta, and record what Meta answered. Never retried on
    its own: the operator sees the error and may try again (blocking twice is harmless)."""
    resources = resources_of(context)
    with log_context(request_id=request_id, job_id=context.job.id):
        async with resources.pool.connection() as conn:
            row = await fetch_optional(conn, "block_request_load", block_request_id=block_request_id)
        if row is None:
            logger.info("block request %s is not pending: nothing to do", block_request_id)
            return
        error = await _ask_meta(resources.graph, row)
        async with resources.pool.connection() as conn, conn.transaction():
            if error is None:
                await execute(conn, "block_request_done", block_request_id=block_request_id)
            elif await fetch_optional(
                conn, "block_request_failed", block_request_id=block_request_id, error=Jsonb(error)
            ):
                reason = " ".join(str(part) for part in (error.get("message"), error.get("details")) if part)
                await execute(
                    conn,
                    "notification_insert",
                    conversation_id=row["conversation_id"],
                    message_id=None,
                    kind="block_failed",
                    body=f"WhatsApp refused to {row['action']} this contact: {reason}",
                )
        outcome = "done" if error is None else f"refused: {error.get('message')}"
        logger.info("%s of conversation %s: %s", row["action"], row["conversation_id"], outcome)


async def _ask_meta(graph: Any, row: dict[str, Any]) -> dict[str, Any] | None:
    """None when Meta blocked (or unblocked) the contact, else the error to show the operator."""
    if not row["wa_id"]:
        return {"message": "This contact shares no phone number: Meta's block-users API takes a phone number."}
    try:
        response = await graph.block_users(
            phone_number_id=row["phone_number_id"], user=row["wa_id"], block=row["action"] == "block"
        )
    except httpx.TransportError as exc:
        return {"message": f"Meta could not be reached ({type(exc).__name__}); try again."}
    failed = _failed_user(response)
    if failed is not None:
        return failed
    if response.is_success:
        return None
    failure = classify_response(response)
    return {"code": failure.code, "message": failure.reason}


def _failed_user(response: httpx.Response) -> dict[str, Any] | None:
    """The first error of `block_users.failed_users` (per user, in a 200 or a 400 answer)."""
    try:
        data = response.json()
    except ValueError:
        return None
    block_users = data.get("block_users") if isinstance(data, dict) else None
    failed = block_users.get("failed_users") if isinstance(block_users, dict) else None
    if not isinstance(failed, list) or not failed or not isinstance(failed[0], dict):
        return None
    errors = failed[0].get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    details = first.get("error_data", {}).get("details") if isinstance(first.get("error_data"), dict) else None
    return {"code": first.get("code"), "message": first.get("message") or "Meta refused the block", "details": details}
