"""A size limit on every request body, fitted to what each endpoint reads, enforced as the endpoint
reads: a declared Content-Length over the limit is refused before a byte is read, and a streamed
body is cut off as soon as it passes the limit. The read raises BodyTooLarge, which the app's
exception handler answers with 413.

BodyLimitMiddleware applies to the whole app, with DEFAULT_LIMIT; a route that reads more declares
its own limit with `Middleware(BodyLimit, limit=...)`. The webhook declares none (None): it applies
WAYPOST_MAX_BODY_BYTES itself, so that even a refused POST is journaled.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waypost.errors import BodyTooLarge

# An operator message is at most Meta's 4,096 characters: 12 bytes each as \uXXXX\uXXXX JSON escapes.
MESSAGE_LIMIT = 64 * 1024
# A sign-in form (email, password, CSRF token, next) is a few hundred bytes.
FORM_LIMIT = 4 * 1024
# Everything else takes a small JSON object or nothing at all.
DEFAULT_LIMIT = 4 * 1024
# Where a route's own limit waits for the reads: set once routing has chosen the route, read by
# the app-wide middleware's receive, which wraps the request before routing.
_SCOPE_KEY = "waypost.body_limit"


class BodyLimit:
    """A route's own body limit (None: the endpoint limits its body itself)."""

    def __init__(self, app: ASGIApp, limit: int | None) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_SCOPE_KEY] = self.limit
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        received = 0

        async def limited() -> Message:
            nonlocal received
            limit: int | None = scope.get(_SCOPE_KEY, DEFAULT_LIMIT)
            if limit is None:
                return await receive()
            if declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
