"""An operator's template message through the JSON API (POST /api/inbox/conversations/{id}/template):
queued like any operator message and sent by the worker through the same claim/send/record path, but
allowed after the 24-hour window has closed (waypost_queue_operator_message_v3), for an approved
template only, and never a marketing template to a contact who opted out (README "Consent")."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from waypost.db import DictPool, fetch_one
from waypost.errors import InvalidBody, MarketingRefused, NotFound, TemplateUnavailable
from waypost.logs import request_id_var
from waypost.text import clean_text
from webhook.inbox import present, store
from webhook.inbox.auth import operator_api
from webhook.limits import MESSAGE_LIMIT, BodyLimit
from webhook.state import app_state
from worker.tasks import defer_operator_send, operator_key


class TemplateBody(BaseModel):
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=32)
    # the body's {{1}}, {{2}}… in order
    parameters: list[str] = Field(default_factory=list, max_length=100)
    client_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{8,100}$")


def graph_template(body: TemplateBody) -> dict[str, Any]:
    """The Graph API's `template` object (docs/whatsapp.md "Message templates")."""
    template: dict[str, Any] = {"name": body.name, "language": {"code": body.language}}
    if body.parameters:
        parameters = [{"type": "text", "text": clean_text(text)} for text in body.parameters]
        template["components"] = [{"type": "body", "parameters": parameters}]
    return template


async def send_template(
    pool: DictPool, conversation_id: int, body: TemplateBody, *, operator_id: int, pause_ai: bool, request_id: str
) -> store.Queued:
    """Queue the template and defer its send in one transaction; a repeated client_key sends nothing new."""
    key = operator_key(body.client_key or uuid.uuid4().hex)
    shown = f"[template {body.name}] " + " | ".join(body.parameters)
    async with pool.connection() as conn, conn.transaction():
        row = await fetch_one(
            conn,
            "template_queue_operator_message",
            conversation_id=conversation_id,
            idempotency_key=key,
            body=clean_text(shown)[:4096],
            payload=Jsonb(graph_template(body)),
            operator_id=operator_id,
            pause_ai=pause_ai,
        )
        outcome = row["outcome"]
        if outcome == "conversation_missing":
            raise NotFound.of("live conversation")
        if outcome == "template_unavailable":
            raise TemplateUnavailable(f"no approved template {body.name!r} in {body.language!r}")
        if outcome == "marketing_refused":
            raise MarketingRefused()
        if outcome == "queued":
            await defer_operator_send(
                conn, message_id=row["message_id"], conversation_id=conversation_id, request_id=request_id
            )
        message = await fetch_one(conn, "inbox_message", message_id=row["message_id"])
    return store.Queued(message, duplicate=outcome == "duplicate")


@operator_api
async def send_template_message(request: Request) -> Response:
    """
    ---
    summary: Send an approved message template as the signed-in operator, even after the 24-hour window
    description: >-
      Sent by the worker through the same idempotent path as any operator message; a repeated
      client_key sends nothing new. `parameters` fill the body's {{1}}, {{2}}... in order.
    tags: [conversations]
    parameters: [{name: conversation_id, in: path, required: true, schema: {type: integer}}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [name, language]
            properties:
              name: {type: string}
              language: {type: string, description: "e.g. en_US"}
              parameters: {type: array, items: {type: string}}
              client_key: {type: string, pattern: "^[A-Za-z0-9_-]{8,100}$"}
    responses:
      202: {description: "{ok, message: Message, duplicate: boolean}"}
      404: {description: no such live conversation}
      409: {description: "TEMPLATE_UNAVAILABLE (not an approved template) or MARKETING_OPTED_OUT"}
      422: {description: invalid body}
    """
    try:
        body = TemplateBody.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidBody(
            "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        ) from None
    state = app_state(request)
    queued = await send_template(
        state.pool,
        store.row_id(request.path_params["conversation_id"], "conversation"),
        body,
        operator_id=request.state.operator["id"],
        pause_ai=state.settings.operator_reply_pauses_ai,
        request_id=request_id_var.get() or "",
    )
    answer = {"ok": True, "message": present.message_json(queued.message), "duplicate": queued.duplicate}
    return JSONResponse(answer, status_code=202)


routes: list[BaseRoute] = [
    Route(
        "/conversations/{conversation_id:int}/template",
        send_template_message,
        methods=["POST"],
        name="send_template",
        middleware=[Middleware(BodyLimit, limit=MESSAGE_LIMIT)],
    ),
]
