"""Reply buttons and lists for the `openai` provider, through function calling (OPENAI_INTERACTIVE).

The model is offered two tools; a call to one is checked against Meta's limits (waypost.kinds)
before it becomes an answer. A call Meta would refuse (4 buttons, a 30-character title, duplicate
ids...) is never sent as it is, nor asked again: it is sent as plain text, the message followed by
its choices one a line, and logged. Arguments that are not a JSON object fall back to the model's
text when it wrote one; else the provider fails (OrchestratorError) and the job asks again later.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from waypost import kinds
from waypost.text import clean_text
from worker.orchestrator import Answer, OrchestratorError

logger = logging.getLogger(__name__)

BUTTONS, LIST = "reply_with_buttons", "reply_with_list"


def _string(description: str, max_length: int) -> dict[str, Any]:
    return {"type": "string", "description": f"{description}, at most {max_length} characters"}


def _choices(properties: dict[str, Any], required: list[str], most: int) -> dict[str, Any]:
    item = {"type": "object", "properties": properties, "required": required}
    return {"type": "array", "minItems": 1, "maxItems": most, "items": item}


_ID = _string("a short id of your choosing, given back to you when the customer taps it", 200)
_TEXT = _string("the message above the choices", 1024)
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": BUTTONS,
            "description": "Answer with a message and 1 to 3 reply buttons: the customer picks one of a few options.",
            "parameters": {
                "type": "object",
                "properties": {
                    "text": _TEXT,
                    "buttons": _choices({"id": _ID, "title": _string("the button's label", 20)}, ["id", "title"], 3),
                },
                "required": ["text", "buttons"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": LIST,
            "description": "Answer with a message and a list of 1 to 10 options, opened with a button, to pick one.",
            "parameters": {
                "type": "object",
                "properties": {
                    "text": _TEXT,
                    "button": _string("the label of the button that opens the list", 20),
                    "rows": _choices(
                        {
                            "id": _ID,
                            "title": _string("the option", 24),
                            "description": _string("an optional detail", 72),
                        },
                        ["id", "title"],
                        10,
                    ),
                },
                "required": ["text", "button", "rows"],
            },
        },
    },
]


def _clean(value: Any) -> Any:
    """The model's strings made storable (a NUL or a lone surrogate fails every write of the claim)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return value


def _items(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise kinds.InvalidMessage(f"{what} must be a list of objects")
    return value


def buttons_object(text: str, buttons: list[dict[str, Any]]) -> dict[str, Any]:
    """An interactive reply-buttons object from {id, title} tables, checked (kinds.InvalidMessage)."""
    replies = [{"type": "reply", "reply": {"id": b.get("id"), "title": b.get("title")}} for b in buttons]
    return kinds.check_interactive({"type": "button", "body": {"text": text}, "action": {"buttons": replies}})


def list_object(text: str, button: Any, rows: list[dict[str, Any]], section: Any = None) -> dict[str, Any]:
    """An interactive list of one section from {id, title, description} tables, checked."""
    keys = ("id", "title", "description")
    found: dict[str, Any] = {"rows": [{k: r[k] for k in keys if r.get(k) not in (None, "")} for r in rows]}
    if section is not None:
        found["title"] = section
    action = {"button": button, "sections": [found]}
    return kinds.check_interactive({"type": "list", "body": {"text": text}, "action": action})


def _payload(name: str, args: dict[str, Any], text: str) -> dict[str, Any]:
    if name == BUTTONS:
        return buttons_object(text, _items(args.get("buttons"), "buttons"))
    if name == LIST:
        return list_object(text, args.get("button"), _items(args.get("rows"), "rows"))
    raise kinds.InvalidMessage(f"no tool is called {name!r}")


def _as_text(text: str, args: dict[str, Any]) -> str:
    """The refused answer as plain text: its message, then the titles of its choices one a line."""
    listed = args.get("buttons") if isinstance(args.get("buttons"), list) else args.get("rows")
    titles = [c["title"].strip() for c in listed or [] if isinstance(c, dict) and isinstance(c.get("title"), str)]
    return "\n".join([text.strip(), "", *(f"- {t}" for t in titles if t)]).strip()


def tool_answer(call: Any, content: str | None) -> Answer | None:
    """The answer a tool call asks for, checked against Meta's limits (see the module's docstring)."""
    function = call.get("function") if isinstance(call, dict) else None
    name = str(function.get("name")) if isinstance(function, dict) else "?"
    raw = function.get("arguments") if isinstance(function, dict) else None
    try:
        args = _clean(json.loads(raw) if isinstance(raw, str) else raw)
        if not isinstance(args, dict):
            raise ValueError("the arguments are not a JSON object")
    except ValueError as exc:  # JSONDecodeError included
        if content and content.strip():
            logger.warning("tool call %s had malformed arguments (%s): answered with the model's text", name, exc)
            return Answer(content.strip())
        raise OrchestratorError(f"the model called {name} with malformed arguments: {exc}") from exc
    given = args.get("text")
    text: str = given if isinstance(given, str) else content or ""
    try:
        payload = _payload(name, args, text)
    except kinds.InvalidMessage as exc:
        plain = _as_text(text, args)
        logger.warning("the model's %s answer breaks Meta's limits (%s): sent as plain text", name, exc)
        return Answer(plain) if plain else None
    return Answer(kinds.summary("interactive", payload, None), kind="interactive", payload=payload)
