"""The conversation summary in the operators' `handover` notification (README "Handing over"): with
the `openai` provider, a few lines written by the model in a separate chat completion (a short
timeout, a small max_tokens, no retry: the handover must not wait on it); else, or when that fails
in any way, the last messages as they were written. The model's text is outside input: cleaned."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from waypost.settings import Settings
from waypost.text import clean_text

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


async def model_summary(settings: Settings, rows: list[dict[str, Any]]) -> str:
    """The model's summary of `rows` (newest first); raises on any failure (httpx, a shape, empty)."""
    headers = {}
    if settings.openai_api_key is not None:  # to OPENAI_BASE_URL only, as the provider sends it
        headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
    transcript = "\n".join(line(row)[:1000] for row in reversed(rows))
    body = {
        "model": settings.openai_model,
        "messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": transcript}],
        "max_tokens": MAX_TOKENS,
    }
    base = (settings.openai_base_url or "").rstrip("/")
    timeout = min(TIMEOUT_SECONDS, settings.openai_timeout)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as client:
        response = await client.post("/chat/completions", json=body)
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
    text = clean_text(content if isinstance(content, str) else "").strip()
    if not text:
        raise ValueError("the model wrote no summary")
    return text[:MAX_CHARS]


async def summary(settings: Settings, rows: list[dict[str, Any]]) -> str:
    """What the notification says of the conversation: `Summary: …` by the model, or the last messages."""
    if settings.orchestrator != "openai" or not rows:
        return last_messages(rows)
    try:
        return f"Summary: {await model_summary(settings, rows)}"
    except Exception as exc:  # any failure: the handover goes on with the last messages
        logger.warning(
            "handover summary: the model's failed (%s: %s); quoting the last messages", type(exc).__name__, exc
        )
        return last_messages(rows)
