"""The conversation summary in the operators' `handover` notification (README "Handing over"): with
the `openai` provider, a few lines written by the model in a separate chat completion (a short
timeout, a small max_tokens, no retry: the handover must not wait on it); else, or when that fails
in any way, the last messages as they were written. The model's text is outside input: cleaned."""

from __future__ import annotations

import logging
from typing import Any

from waypost.settings import Settings
from waypost.text import clean_text
from worker.orchestrator import Orchestrator
from worker.orchestrator.grounding import GroundedOrchestrator
from worker.orchestrator.openai_compat import OpenAIOrchestrator

logger = logging.getLogger(__name__)

LAST_MESSAGES = 6  # what the notification quotes without a model
MODEL_MESSAGES = 20  # what the model reads
MAX_CHARS = 1500
MAX_TOKENS = 200
TIMEOUT_SECONDS = 10.0  # at most; OPENAI_TIMEOUT when shorter
PROMPT = (
    "You hand a WhatsApp conversation between a customer and a business's AI assistant over to a person of "
    "the business. In at most three short sentences, in English, say who the customer is if known, what they "
    "want, what they were told, and what is still open. Write only the summary."
)


def line(row: dict[str, Any]) -> str:
    """A `handover_last_messages` row as the notification quotes it."""
    return f"{'Customer' if row['direction'] == 'inbound' else 'Us'}: {row['body']}"


def last_messages(rows: list[dict[str, Any]]) -> str:
    """The newest LAST_MESSAGES of `rows` (newest first), oldest first."""
    return clean_text("\n".join(line(row) for row in reversed(rows[:LAST_MESSAGES])))[:MAX_CHARS]


async def model_summary(orchestrator: OpenAIOrchestrator, seconds: float, rows: list[dict[str, Any]]) -> str:
    """The model's summary of `rows` (newest first), through the provider's own client (its key goes
    only to OPENAI_BASE_URL); raises on any failure (httpx, a shape, empty)."""
    transcript = "\n".join(line(row)[:1000] for row in reversed(rows))
    text = clean_text(await orchestrator.write(PROMPT, transcript, max_tokens=MAX_TOKENS, seconds=seconds)).strip()
    if not text:
        raise ValueError("the model wrote no summary")
    return text[:MAX_CHARS]


async def summary(settings: Settings, orchestrator: Orchestrator, rows: list[dict[str, Any]]) -> str:
    """What the notification says of the conversation: `Summary: …` by the model, or the last messages."""
    provider = orchestrator.inner if isinstance(orchestrator, GroundedOrchestrator) else orchestrator
    if not isinstance(provider, OpenAIOrchestrator) or not rows:
        return last_messages(rows)
    try:
        return f"Summary: {await model_summary(provider, min(TIMEOUT_SECONDS, settings.openai_timeout), rows)}"
    except Exception as exc:  # any failure: the handover goes on with the last messages
        logger.warning(
            "handover summary: the model's failed (%s: %s); quoting the last messages", type(exc).__name__, exc
        )
        return last_messages(rows)
