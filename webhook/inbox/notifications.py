"""The operators' notifications in the inbox's JSON API (mounted with webhook.inbox.api's routes)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from webhook.inbox import present, store
from webhook.inbox.auth import operator_api
from webhook.inbox.json_api import ok, parse, path_id
from webhook.state import app_state


class SnoozeBody(BaseModel):
    until: dt.datetime | None


@operator_api
async def list_notifications(request: Request) -> Response:
    """
    ---
    summary: Notifications (send failed, window closed, AI could not answer...) with the unread count
    tags: [notifications]
    parameters:
      - {name: include_read, in: query, schema: {type: boolean}}
      - {name: include_snoozed, in: query, schema: {type: boolean}}
    responses:
      200: {description: "{ok, unread, snoozed, next_wake, notifications: [Notification]}"}
    """
    pool = app_state(request).pool
    params = request.query_params
    rows, counts = await store.notifications(
        pool,
        include_read=present.flag(params, "include_read"),
        include_snoozed=present.flag(params, "include_snoozed"),
    )
    return ok(
        unread=counts["unread"],
        snoozed=counts["snoozed"],
        next_wake=present.iso(counts["next_wake"]),
        notifications=[present.notification_json(row) for row in rows],
    )


@operator_api
async def read_notification(request: Request) -> Response:
    """
    ---
    summary: Mark a notification read
    tags: [notifications]
    parameters: [{name: notification_id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "{ok}"}
      404: {description: no such notification}
    """
    await store.mark_notification_read(app_state(request).pool, path_id(request, "notification_id"))
    return ok()


@operator_api
async def snooze_notification(request: Request) -> Response:
    """
    ---
    summary: Snooze a notification until a time (null wakes it now); it comes back by itself
    tags: [notifications]
    parameters: [{name: notification_id, in: path, required: true, schema: {type: integer}}]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [until]
            properties: {until: {type: string, format: date-time, nullable: true}}
    responses:
      200: {description: "{ok}"}
      400: {description: "BAD_TIME: in the past, more than 30 days ahead, or without a UTC offset"}
    """
    payload: SnoozeBody = await parse(request, SnoozeBody)
    await store.snooze(app_state(request).pool, path_id(request, "notification_id"), payload.until)
    return ok()


routes: list[BaseRoute] = [
    Route("/notifications", list_notifications, methods=["GET"], name="notifications"),
    Route("/notifications/{notification_id:int}/read", read_notification, methods=["POST"], name="read_notification"),
    Route("/notifications/{notification_id:int}/snooze", snooze_notification, methods=["POST"], name="snooze"),
]
