"""What a model is told of the knowledge base, and its way out: the `hand_over` tool.

The passages go in the system message, numbered, each with its document's title and heading; the
model is told to answer only from them and the conversation, and to call `hand_over` with a reason
when they do not answer the customer. A call to it becomes a `Handover` (its reason cleaned and cut
to MAX_REASON_CHARS); whatever text came with the call is not sent.
"""

from __future__ import annotations

import json
from typing import Any

from waypost.knowledge import Hit
from waypost.text import clean_text
from worker.orchestrator import Handover

HAND_OVER = "hand_over"
MAX_REASON_CHARS = 300
MAX_PROMPT_PASSAGE_CHARS = 2000

HAND_OVER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": HAND_OVER,
        "description": (
            "Hand the conversation over to a person of the business, when the knowledge passages and the "
            "conversation do not answer the customer, or the customer needs something only a person can do."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {
                    "type": "string",
                    "description": f"why a person is needed, for the business's staff, at most {MAX_REASON_CHARS} "
                    "characters",
                }
            },
            "required": ["reason"],
        },
    },
}

INSTRUCTIONS = (
    "Answer only from the knowledge passages below and from this conversation. Do not use anything else "
    "you know about this business, and never guess prices, dates, policies or availability. If the passages "
    f"and the conversation do not answer the customer, call the {HAND_OVER} tool with a short reason instead "
    "of answering."
)


def grounded_prompt(system_prompt: str, hits: tuple[Hit, ...]) -> str:
    passages = []
    for number, hit in enumerate(hits, start=1):
        where = " — ".join(part for part in (hit.title, hit.heading) if part)
        text = hit.text if len(hit.text) <= MAX_PROMPT_PASSAGE_CHARS else hit.text[:MAX_PROMPT_PASSAGE_CHARS] + "…"
        if hit.source_kind == "qa":
            passages.append(f"[{number}] Question: {hit.heading}\nAnswer: {text}")
        else:
            passages.append(f"[{number}] {where}\n{text}")
    return "\n\n".join([system_prompt, INSTRUCTIONS, "Knowledge passages:", *passages])


def handover_of(message: Any) -> Handover | None:
    """The model's hand_over call as a Handover, or None when it made none."""
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or function.get("name") != HAND_OVER:
            continue
        raw = function.get("arguments")
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            args = None
        reason = args.get("reason") if isinstance(args, dict) else None
        text = " ".join(clean_text(reason).split()) if isinstance(reason, str) else ""
        return Handover(text[:MAX_REASON_CHARS] or "the model handed over without a reason")
    return None
