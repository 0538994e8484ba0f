"""The block-users side of the fake Graph API, mixed into FakeGraph (waypost/devtools/fake_graph.py).

POST and DELETE /{phone-number-id}/block_users with Meta's rules (docs/whatsapp.md "Blocking users"):
only a user who messaged the business in the last 24 hours can be blocked (the fake knows them from
`heard`, or POST /_fake/heard {"user"}), at most 1,000 users a request, a blocklist of 64,000;
a refused user comes back in `failed_users`, and the answer is then 400 with error 139100.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from waypost.devtools.fake_answers import error_body

WINDOW_SECONDS = 24 * 3600
MAX_USERS = 1000
MAX_BLOCKLIST = 64000


class FakeBlockMixin:
    access_token: str

    inbound: Callable[[str], None]  # FakeReceiptsMixin's

    def _init_block(self) -> None:
        self.heard_from: dict[str, float] = {}  # user -> when they last messaged the business
        self.blocked: dict[str, set[str]] = {}  # phone_number_id -> blocked users
        self.block_calls: list[tuple[str, str, list[str]]] = []  # (method, phone_number_id, users)

    def heard(self, user: str, at: float | None = None) -> None:
        """The user messaged the business (at `at`, default now): within 24 hours they can be blocked."""
        self.heard_from[user.lstrip("+")] = time.time() if at is None else at

    async def heard_endpoint(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        if "user" in body:
            self.heard(str(body["user"]), body.get("at"))
        if "message_id" in body:  # an inbound message: it may be marked read (fake_receipts.py)
            self.inbound(str(body["message_id"]))
        return JSONResponse({"ok": True})

    async def block_users(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(error_body(190, "Invalid OAuth access token."), status_code=401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(error_body(100, "The request body is not JSON"), status_code=400)
        users = _users(body)
        if isinstance(users, str):
            return JSONResponse(error_body(100, users), status_code=400)
        phone_number_id = request.path_params["phone_number_id"]
        self.block_calls.append((request.method, phone_number_id, users))
        blocklist = self.blocked.setdefault(phone_number_id, set())
        done: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for user in users:
            wa_id = user.lstrip("+")
            problem = None if request.method == "DELETE" else self._block_problem(wa_id, blocklist)
            if problem:
                failed.append({"input": user, "wa_id": wa_id, "errors": [problem]})
                continue
            (blocklist.discard if request.method == "DELETE" else blocklist.add)(wa_id)
            done.append({"input": user, "wa_id": wa_id})
        key = "removed_users" if request.method == "DELETE" else "added_users"
        answer: dict[str, Any] = {"messaging_product": "whatsapp", "block_users": {key: done}}
        if not failed:
            return JSONResponse(answer)
        answer["block_users"]["failed_users"] = failed
        answer["error"] = {
            "message": "(#139100) Failed to block/unblock users",
            "type": "OAuthException",
            "code": 139100,
            "error_data": {"details": "Failed to block some users, see the block_users response list for details"},
            "fbtrace_id": "AFakeTraceId",
        }
        return JSONResponse(answer, status_code=400)

    def _block_problem(self, wa_id: str, blocklist: set[str]) -> dict[str, Any] | None:
        heard = self.heard_from.get(wa_id)
        if heard is None or time.time() - heard > WINDOW_SECONDS:
            return {
                "message": "Re-engagement required",
                "code": 131047,
                "error_data": {"details": "User has not messaged in the last 24 hours"},
            }
        if len(blocklist) >= MAX_BLOCKLIST and wa_id not in blocklist:
            return {"message": "Blocklist full", "code": 139100, "error_data": {"details": "The blocklist is full"}}
        return None


def _users(body: Any) -> list[str] | str:
    """The users named by a block_users body, or what Meta would refuse in it (error 100)."""
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return "messaging_product must be 'whatsapp'"
    items = body.get("block_users")
    if not isinstance(items, list) or not items:
        return "block_users must be a non-empty list"
    if len(items) > MAX_USERS:
        return f"block_users takes at most {MAX_USERS} users"
    users = [item["user"] for item in items if isinstance(item, dict) and isinstance(item.get("user"), str)]
    if len(users) != len(items) or not all(users):
        return "each block_users item needs a 'user'"
    return users
