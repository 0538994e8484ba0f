"""ASGI middleware: request ids on every request, and the DB_MISMATCH guard around the /api group."""

from __future__ import annotations

import logging
import re
import uuid

import psycopg
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waypost import metrics
from waypost.errors import DatabaseUnavailable, SchemaMismatch
from waypost.logs import request_id_var
from webhook.errors import SCHEMA_ERRORS
from webhook.state import AppState

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
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


class SchemaGuardMiddleware:
    """Every route of its group answers DB_MISMATCH while the schema does not match. No fallback.

    It raises, and the app's exception handler renders the refusal (the group sits inside the app's
    exception middleware). `webhook` names the one route whose refusals count as webhook outcomes.
    """

    def __init__(self, app: ASGIApp, webhook: str) -> None:
        self.app = app
        self.webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: AppState = scope["app"].state.waypost
        try:
            report = await state.schema.current()
        except psycopg.OperationalError as exc:
            logger.exception("schema check failed: database unavailable")
            raise DatabaseUnavailable() from exc
        if not report.ok:
            if scope["method"] == "POST" and scope["path"] == self.webhook:
                metrics.WEBHOOK_REQUESTS.labels("db_mismatch").inc()  # refused before the endpoint
            raise SchemaMismatch(report.problems)
        try:
            await self.app(scope, receive, send)
        except SCHEMA_ERRORS as exc:
            logger.exception("query failed on a missing schema object; re-checking the schema")
            report = await state.schema.refresh()
            raise SchemaMismatch(report.problems or ["a query hit a missing object"]) from exc
