"""How the web app answers a refusal: each domain error class has one HTTP status (STATUS, looked up
along the class's MRO, so a subclass answers like its parent unless it is listed), and the app's
exception handlers render it once, as the JSON envelope {ok: false, code, error, request_id} for the
API, the webhook and the operations endpoints, or as a page for the inbox's pages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from waypost import errors
from waypost.logs import request_id_var

logger = logging.getLogger(__name__)

STATUS: dict[type[errors.WaypostError], int] = {
    errors.WaypostError: 500,
    errors.TemplateSyncFailed: 502,
    errors.BadRequest: 400,
    errors.InvalidBody: 422,
    errors.TemplateDraftInvalid: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.BodyTooLarge: 413,
    errors.UnsupportedFile: 415,
    errors.Unauthorized: 401,
    errors.CsrfRefused: 403,
    errors.SignatureMissing: 401,
    errors.SignatureInvalid: 403,
    errors.Disabled: 503,
    errors.MetricsOff: 404,  # an unconfigured scrape target looks absent, not broken
    errors.ProcessingFailed: 500,  # Meta delivers again
    errors.SignInRefused: 401,
    errors.UnusableCredentials: 400,
    errors.TooManySignIns: 429,
    errors.DatabaseUnavailable: 503,
    errors.MediaStoreUnavailable: 503,
    errors.SchemaMismatch: 500,
}

# Refusals of access answer the envelope even to a page request, as they always have: the page script
# and scripted clients read the code (INBOX_DISABLED, CSRF); a signed-out page visit is redirected.
ALWAYS_JSON: tuple[type[errors.WaypostError], ...] = (errors.Disabled, errors.CsrfRefused, errors.Unauthorized)

# Errors that mean the schema moved under a running app, not that the request was bad. No handler
# may catch a base class of these: the schema guard around /api/ must see them.
SCHEMA_ERRORS = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedObject,
)


def status_of(exc: errors.WaypostError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    raise AssertionError("unreachable: WaypostError is in STATUS")


def error_response(exc: errors.WaypostError, status: int | None = None) -> JSONResponse:
    """The app's one error envelope: ok=false, a stable code, a sentence, the request id."""
    return JSONResponse(
        {"ok": False, "code": exc.code, "error": str(exc), "request_id": request_id_var.get(), **exc.extra},
        status_code=status or status_of(exc),
    )


# Renders a refusal as a page when the request went to one, else None (webhook.inbox.pages.error_page).
PageRenderer = Callable[[Request, errors.WaypostError, int], Response | None]


def exception_handlers(page: PageRenderer) -> Mapping[Any, Callable[[Request, Exception], Any]]:
    """The app's handlers: every WaypostError raised by an endpoint or a route group's middleware, and
    a lost database (psycopg's OperationalError, PoolTimeout included) on any path."""

    async def waypost_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.WaypostError)
        status = status_of(exc)
        shown = None if isinstance(exc, ALWAYS_JSON) else page(request, exc, status)
        return shown or error_response(exc, status)

    async def database_unavailable(request: Request, exc: Exception) -> Response:
        logger.warning("database unavailable: %s", exc)
        return error_response(errors.DatabaseUnavailable())

    return {errors.WaypostError: waypost_error, psycopg.OperationalError: database_unavailable}
