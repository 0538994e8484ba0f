"""How the fake Graph API answers: Meta's error bodies and the scripted behaviours of a send or upload
(waypost/devtools/fake_graph.py and fake_media.py share them)."""

from __future__ import annotations

import dataclasses
from typing import Any

ERRORS = {  # code -> (HTTP status, details), as Meta answers them (reference A6)
    130429: (400, "Cloud API message throughput has been reached."),
    131056: (400, "Too many messages sent from the sender phone number to the same recipient phone number."),
    131000: (500, "Message failed to send due to an unknown error."),
    131047: (400, "More than 24 hours have passed since the recipient last replied to the sender number."),
    131026: (400, "Message undeliverable."),
    190: (401, "Your access token has expired."),
    100: (400, "Invalid parameter."),
    # message templates (docs/whatsapp.md "Message templates": errors of a template send)
    132000: (400, "Number of parameters does not match the expected number of params"),
    132001: (400, "The template does not exist in the specified language or the template has not been approved."),
    132015: (400, "Template is paused due to low quality so it cannot be sent in a template message."),
    132016: (400, "Template has been paused too many times due to low quality and is now permanently disabled."),
}


@dataclasses.dataclass
class Behaviour:
    """How to answer one request. `hang` seconds of silence first; `accept` decides whether Meta
    "took" the message even if the answer is an error or never arrives (a lost response)."""

    status: int = 200
    code: int | None = None
    hang: float = 0.0
    accept: bool | None = None  # default: accepted iff status is 200
    retry_after: str | None = None


def error_body(code: int, message: str | None = None) -> dict[str, Any]:
    details = ERRORS.get(code, (400, message or "error"))[1]
    return {
        "error": {
            "message": f"(#{code}) {message or details}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AFakeTraceId",
        }
    }


@dataclasses.dataclass
class Recorded:
    """One request the fake answered: a send (`wa_message_id` the wamid it gave, if accepted) or a
    read/typing call (`wa_message_id` the message it named)."""

    at: float
    phone_number_id: str
    body: dict[str, Any]
    status: int
    accepted: bool
    wa_message_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
