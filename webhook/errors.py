"""Requests refused for a reason the client can act on: raised anywhere as an HttpError, rendered once
by the app's exception handler (JSON envelope for the API, a page for the inbox's pages)."""

from __future__ import annotations


class HttpError(Exception):
    """A refusal with its HTTP status and a stable machine code."""

    status = 400
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadInput(HttpError):
    """Input that cannot be stored or sent as it is (a NUL character, say)."""

    code = "BAD_INPUT"


class NotFound(HttpError):
    status = 404
    code = "NOT_FOUND"


class BodyTooLarge(HttpError):
    status = 413
    code = "BODY_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than this endpoint's {limit} byte limit")
