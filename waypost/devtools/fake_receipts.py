"""Read receipts and typing indicators on the fake Graph API, mixed into FakeGraph
(waypost/devtools/fake_graph.py).

Meta takes them on the send endpoint, POST /{phone-number-id}/messages, with a body of `status: "read"`,
the inbound `message_id` and optionally `typing_indicator: {"type": "text"}`, and answers
`{"success": true}` (docs/whatsapp.md "Read receipts and the typing indicator"). The fake checks that
shape, refuses a wamid it sent itself (only received messages can be marked read) or, once told which
inbound messages exist (`inbound(wamid)` or POST /_fake/heard {"message_id"}), any other unknown one
(131009), records each call in `receipts` (apart from `requests`, which hold the sends), and answers
the next behaviour of `receipt_script` (an error, or a hang).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from starlette.responses import JSONResponse

from waypost.devtools.fake_answers import Behaviour, Recorded, error_body

RECEIPT_KEYS = frozenset({"messaging_product", "status", "message_id", "typing_indicator", "recipient_type"})


def receipt_problem(body: dict[str, Any]) -> str | None:
    """What Meta would refuse (error 100) in a read/typing call, or None."""
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be 'whatsapp'"
    if body.get("status") != "read":
        return "status must be 'read'"
    if not isinstance(body.get("message_id"), str) or not body["message_id"].strip():
        return "message_id is required"
    typing = body.get("typing_indicator")
    if typing is not None and typing != {"type": "text"}:
        return "typing_indicator must be {'type': 'text'}"
    unknown = sorted(set(body) - RECEIPT_KEYS)
    if unknown:
        return f"unexpected parameters for a read receipt: {', '.join(unknown)}"
    return None


class FakeReceiptsMixin:
    sent_ids: set[str]  # the wamids of the fake's accepted sends (FakeGraph)

    def _init_receipts(self) -> None:
        self.receipts: list[Recorded] = []  # every read/typing call, refused ones included
        self.receipt_script: deque[Behaviour] = deque()
        self.inbound_ids: set[str] | None = None  # None: any wamid the fake did not send is accepted

    def inbound(self, wa_message_id: str) -> None:
        """A message the contact sent: from now on only known inbound wamids may be marked read."""
        if self.inbound_ids is None:
            self.inbound_ids = set()
        self.inbound_ids.add(wa_message_id)

    def typing_calls(self, wa_message_id: str | None = None) -> list[Recorded]:
        """The accepted calls that showed the typing indicator (for one message, or all)."""
        return [
            r
            for r in self.receipts
            if r.accepted and "typing_indicator" in r.body and wa_message_id in (None, r.wa_message_id)
        ]

    def read_calls(self, wa_message_id: str | None = None) -> list[Recorded]:
        """The accepted calls that marked a message read without the typing indicator."""
        return [
            r
            for r in self.receipts
            if r.accepted and "typing_indicator" not in r.body and wa_message_id in (None, r.wa_message_id)
        ]

    async def receipt(self, phone_number_id: str, body: dict[str, Any]) -> JSONResponse:
        message_id = body.get("message_id") if isinstance(body.get("message_id"), str) else None
        problem = receipt_problem(body)
        status, code = (400, 100) if problem else (200, None)
        if problem is None and message_id is not None and self._not_inbound(message_id):
            problem, status, code = "Invalid parameter: message_id is not a message you received", 400, 131009
        behaviour = self.receipt_script.popleft() if problem is None and self.receipt_script else Behaviour()
        if problem is None:
            status, code = behaviour.status, behaviour.code
        accepted = status == 200 if behaviour.accept is None or problem else behaviour.accept
        self.receipts.append(Recorded(time.time(), phone_number_id, body, status, accepted, message_id))
        if behaviour.hang:
            await asyncio.sleep(behaviour.hang)
        if status != 200:
            return JSONResponse(error_body(code or 131000, problem), status_code=status)
        return JSONResponse({"success": True})

    def _not_inbound(self, message_id: str) -> bool:
        if message_id in self.sent_ids:
            return True  # one the fake sent: an outgoing message cannot be marked read
        return self.inbound_ids is not None and message_id not in self.inbound_ids
