"""ASGI middleware: request ids on every request, and the DB_MISMATCH guard in front of /api/."""

from __future__ import annotations

import logging
import re
import uuid

import psycopg
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waypost import metrics
from waypost.logs import request_id_var
from webhook.state import AppState

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
WEBHOOK_PATH = "/api/webhooks/whatsapp"
# A caller's id is kept for correlation only (it grants nothing), if it is a sane token.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if _SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def json_error(status_code: int, code: str, message: str, **extra: object) -> JSONResponse:
    """Every error answer of the app: ok=false, a stable code, a sentence, the request id."""
    return JSONResponse(
        {"ok": False, "code": code, "error": message, "request_id": request_id_var.get(), **extra},
        status_code=status_code,
    )


def db_mismatch_response(problems: list[str]) -> JSONResponse:
    return JSONResponse(
        {
            "ok": False,
            "code": "DB_MISMATCH",
            "error": "the database schema does not match this version of Waypost; run `waypost migrate`",
            "problems": problems,
            "request_id": request_id_var.get(),
        },
        status_code=500,
    )


def db_unavailable_response() -> JSONResponse:
    return JSONResponse(
        {
            "ok": False,
            "code": "DB_UNAVAILABLE",
            "error": "the database cannot be reached",
            "request_id": request_id_var.get(),
        },
        status_code=503,
    )


# Errors that mean the schema moved under a running app, not that the request was bad.
SCHEMA_ERRORS = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedObject,
)


class SchemaGuardMiddleware:
    """Every /api/ route answers DB_MISMATCH while the schema does not match. No fallback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        state: AppState = scope["app"].state.waypost
        try:
            report = await state.schema.current()
        except psycopg.OperationalError:
            logger.exception("schema check failed: database unavailable")
            await db_unavailable_response()(scope, receive, send)
            return
        if not report.ok:
            if scope["method"] == "POST" and scope["path"] == WEBHOOK_PATH:
                metrics.WEBHOOK_REQUESTS.labels("db_mismatch").inc()  # refused before the endpoint
            await db_mismatch_response(report.problems)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except SCHEMA_ERRORS:
            logger.exception("query failed on a missing schema object; re-checking the schema")
            report = await state.schema.refresh()
            await db_mismatch_response(report.problems or ["a query hit a missing object"])(scope, receive, send)
