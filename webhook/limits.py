"""A size limit on every request body, fitted to what each endpoint reads, enforced as the endpoint
reads: a declared Content-Length over the limit is refused before a byte is read, and a streamed
body is cut off as soon as it passes the limit. The read raises BodyTooLarge, which the app's
exception handler answers with 413.

The webhook is the exception: it applies WAYPOST_MAX_BODY_BYTES itself, so that even a refused
POST is journaled.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhook.errors import BodyTooLarge

WEBHOOK_PATH = "/api/webhooks/whatsapp"
# An operator message is at most Meta's 4,096 characters: 12 bytes each as \uXXXX\uXXXX JSON escapes.
MESSAGE_LIMIT = 64 * 1024
# A sign-in form (email, password, CSRF token, next) is a few hundred bytes.
FORM_LIMIT = 4 * 1024
# Everything else takes a small JSON object or nothing at all.
DEFAULT_LIMIT = 4 * 1024
LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"/api/inbox/conversations/[^/]+/messages"), MESSAGE_LIMIT),
    (re.compile(r"/inbox/log(in|out)"), FORM_LIMIT),
)


def limit_for(path: str) -> int:
    for pattern, limit in LIMITS:
        if pattern.fullmatch(path):
            return limit
    return DEFAULT_LIMIT


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == WEBHOOK_PATH:
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        received = 0

        async def limited() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
