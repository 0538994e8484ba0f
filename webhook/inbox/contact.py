"""The inbox's export and erase of a conversation's contact (waypost/contact_data.py does the work):
the JSON API here, the confirmation page and the HTML download in webhook/inbox/pages.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from waypost import contact_data
from waypost.errors import InvalidBody
from webhook.inbox import store
from webhook.inbox.auth import operator_api
from webhook.limits import FORM_LIMIT, BodyLimit
from webhook.state import app_state


class EraseBody(BaseModel):
    confirm: Literal["erase"]  # nothing is erased by a call that did not say so


async def contact_export(request: Request) -> dict[str, Any]:
    conversation_id = store.row_id(request.path_params["conversation_id"], "conversation")
    async with app_state(request).pool.connection() as conn:
        identifier = await contact_data.identifier_of_conversation(conn, conversation_id)
        return await contact_data.export(conn, identifier)


async def contact_erase(request: Request) -> contact_data.Erasure:
    conversation_id = store.row_id(request.path_params["conversation_id"], "conversation")
    state = app_state(request)
    async with state.pool.connection() as conn:
        identifier = await contact_data.identifier_of_conversation(conn, conversation_id)
        return await contact_data.erase(conn, identifier, request.state.operator["email"], state.media_store)


@operator_api
async def export_contact(request: Request) -> Response:
    """
    ---
    summary: Everything stored about the conversation's contact (all their conversations, merged ones included)
    tags: [contacts]
    parameters: [{name: conversation_id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "{identifiers, conversations, messages, media, statuses, message_changes, notifications}"}
      404: {description: no such conversation}
    """
    response = JSONResponse(await contact_export(request))
    response.headers["Cache-Control"] = "no-store"
    return response


@operator_api
async def erase_contact(request: Request) -> Response:
    """
    ---
    summary: Erase the conversation's contact (conversations, messages, files, statuses, notifications, journal rows)
    tags: [contacts]
    parameters: [{name: conversation_id, in: path, required: true, schema: {type: integer}}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {type: object, required: [confirm], properties: {confirm: {type: string, enum: [erase]}}}
    responses:
      200: {description: "{ok, erasure_id, counts}: counts of rows removed per table"}
      422: {description: "confirm is not \\"erase\\": nothing erased"}
      404: {description: no such conversation}
      409: {description: "CONFLICT: a message to the contact is being sent; try again in a minute"}
      503: {description: "MEDIA_STORE_UNAVAILABLE: a file in S3 could not be deleted; nothing was erased"}
    """
    try:
        EraseBody.model_validate_json(await request.body())
    except ValidationError:
        raise InvalidBody('confirm: the body must be {"confirm": "erase"}') from None
    erasure = await contact_erase(request)
    return JSONResponse({"ok": True, "erasure_id": erasure.erasure_id, "counts": erasure.counts})


routes: list[BaseRoute] = [
    Route("/conversations/{conversation_id:int}/export", export_contact, methods=["GET"], name="export_contact"),
    Route(
        "/conversations/{conversation_id:int}/erase",
        erase_contact,
        methods=["POST"],
        name="erase_contact",
        middleware=[Middleware(BodyLimit, limit=FORM_LIMIT)],
    ),
]
