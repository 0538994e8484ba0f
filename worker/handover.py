"""Handing a conversation over to a person (README "Handing over"): when the customer asks for one
(WAYPOST_HANDOVER_WORDS, a phrase anywhere in a text message: "I want to talk to a human"), or the AI
hands over (the model's `hand_over` tool, a strict knowledge-base miss). The AI is paused for that
conversation, the operators get a `handover` notification with the reason and the last messages, and
the customer gets WAYPOST_HANDOVER_MESSAGE as the reply itself: through the claim path, once.

Not built yet (issue 16): business hours in the message, a summary written by the model, ownership
in the conversation list, and handing back by itself after a while.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from waypost.consent_words import normalise, split_language
from waypost.db import execute, fetch_all
from waypost.text import clean_text
from worker.rows import Conversation, Inbound
from worker.sending import Outbound, notify

if TYPE_CHECKING:
    from worker.reply import ReplyRun

ASKED = "the customer asked for a person"
SUMMARY_MESSAGES = 6  # the last messages the notification quotes


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


async def hand_over(
    run: ReplyRun, conversation: Conversation, inbound: Inbound, key: str, reason: str
) -> Outbound | None:
    """Pause the AI, tell the operators why with the last messages, and return the customer's message
    to send as this reply (None, the job closed, when WAYPOST_HANDOVER_MESSAGE is empty)."""
    async with run.pool.connection() as conn, conn.transaction():
        rows = await fetch_all(conn, "handover_last_messages", conversation_id=conversation.id, limit=SUMMARY_MESSAGES)
        lines = [f"{'Customer' if r['direction'] == 'inbound' else 'Us'}: {r['body']}" for r in reversed(rows)]
        summary = clean_text("\n".join(lines))[:1500]
        await execute(conn, "handover_pause_ai", conversation_id=conversation.id, reason=clean_text(reason)[:500])
        await notify(conn, conversation.id, "handover", f"Handed over to a person: {reason}.\n{summary}".strip())
    run.clock.log("handover", reason)
    message = run.settings.handover_message.strip()
    if not message:
        await run.skip(conversation.id, f"handover: {reason}")
        return None
    return Outbound(conversation, key=key, body=message, author="ai", reply_to=inbound)
