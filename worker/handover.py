"""Handing a conversation over to a person (README "Handing over"): when the customer asks for one
(WAYPOST_HANDOVER_WORDS, a phrase anywhere in a text message: "I want to talk to a human"), or the AI
hands over (the model's `hand_over` tool, a strict knowledge-base miss). The AI is paused for that
conversation, the operators get a `handover` notification with the reason and a summary, and the
customer gets WAYPOST_HANDOVER_MESSAGE as the reply itself: through the claim path, once.

Also when the AI has answered WAYPOST_HANDOVER_AFTER_AI_REPLIES times in a row (counted in SQL), and
(WAYPOST_HANDOVER_ON_AI_FAILURE) when it failed for good or had no reply. The notification carries a
summary (worker.summary) and, outside business hours (worker.business_hours), when the business opens,
which the customer's message (WAYPOST_HANDOVER_MESSAGE_CLOSED) promises too.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from waypost.consent_words import normalise, split_language
from waypost.db import execute, fetch_all, fetch_value
from waypost.settings import Settings
from waypost.text import clean_text
from worker import business_hours, summary
from worker.rows import Conversation, Inbound
from worker.sending import Outbound

if TYPE_CHECKING:
    from worker.reply import ReplyRun

ASKED = "the customer asked for a person"
NO_REPLY = "the AI had no reply"


@functools.lru_cache(maxsize=4)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    words = sorted({normalise(split_language(p)[1]) for p in phrases} - {""}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)")


def asks_for_a_person(phrases: tuple[str, ...], message_type: str, body: str | None) -> bool:
    """Whether a text message contains one of the phrases as whole words, whatever the case, accents
    kept ("talk to a HUMAN please" does; "humane" does not)."""
    pattern = _pattern(phrases)
    if pattern is None or message_type != "text" or not body:
        return False
    return pattern.search(normalise(body[:2000])) is not None


async def handover_reason(
    run: ReplyRun, conversation: Conversation, messages: Sequence[Inbound], replies: int | None = None
) -> str | None:
    """Why this turn (its messages) goes to a person before the AI is asked, if it does: the customer
    asked for one, or the AI has already answered WAYPOST_HANDOVER_AFTER_AI_REPLIES times in a row
    (`replies`, when the run read the count already: waypost_start_reply_v1)."""
    if any(asks_for_a_person(run.settings.handover_words, m.type, m.body) for m in messages):
        return ASKED
    limit = run.settings.handover_after_ai_replies
    if limit:
        if replies is None:
            async with run.pool.connection() as conn:
                replies = await fetch_value(conn, "handover_ai_replies_in_a_row", conversation_id=conversation.id)
        if replies >= limit:
            return f"the AI has answered {replies} times in a row (WAYPOST_HANDOVER_AFTER_AI_REPLIES={limit})"
    return None


def customer_message(settings: Settings, now: dt.datetime) -> tuple[str, str | None]:
    """The customer's handover message at `now`, and when the business opens next ("tomorrow from
    9:00"; None while it is open)."""
    schedule, zone = business_hours.configured(settings)
    opening = business_hours.next_opening(schedule, zone, now)
    if opening is None:
        return settings.handover_message.strip(), None
    opens = business_hours.describe_opening(opening, now)
    return settings.handover_message_closed.replace("{opens}", opens).strip(), opens


async def hand_over(
    run: ReplyRun, conversation: Conversation, inbound: Inbound, key: str, reason: str
) -> Outbound | None:
    """Pause the AI, tell the operators why with a summary, and return the customer's message to send
    as this reply (None, the job closed, when that message is empty). The summary is written before
    the transaction: a model's seconds never hold it open."""
    async with run.pool.connection() as conn:
        rows = await fetch_all(
            conn, "handover_last_messages", conversation_id=conversation.id, limit=summary.MODEL_MESSAGES
        )
    written = await summary.summary(run.settings, run.resources.orchestrator, rows)
    message, opens = customer_message(run.settings, dt.datetime.now(dt.UTC))
    closed = f"\nOutside business hours: a person was promised {opens}." if opens else ""
    body = clean_text(f"Handed over to a person: {reason[:500]}.{closed}\n{written}").strip()
    async with run.pool.connection() as conn, conn.transaction():
        await execute(conn, "handover_pause_ai", conversation_id=conversation.id, reason=clean_text(reason)[:500])
        # the message answered is named: the count of AI replies in a row starts after it
        await execute(
            conn,
            "notification_insert",
            conversation_id=conversation.id,
            message_id=inbound.id,
            kind="handover",
            body=body,
        )
    run.clock.log("handover", f"{reason}{f' (closed: opens {opens})' if opens else ''}")
    if not message:
        await run.skip(conversation.id, f"handover: {reason}")
        return None
    return Outbound(conversation, key=key, body=message, author="ai", reply_to=inbound)


async def owed_message(run: ReplyRun, messages: Sequence[Inbound]) -> str | None:
    """The customer's handover message when this turn was handed over but its run died before the
    message was claimed (the AI is paused since, so the retry would otherwise skip it); else None."""
    async with run.pool.connection() as conn:
        owed = await fetch_value(conn, "handover_owed", message_ids=[m.id for m in messages])
    if not owed:
        return None
    message, _ = customer_message(run.settings, dt.datetime.now(dt.UTC))
    return message or None
