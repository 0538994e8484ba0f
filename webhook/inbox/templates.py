"""An operator's template message through the JSON API (POST /api/inbox/conversations/{id}/template):
queued like any operator message and sent by the worker through the same claim/send/record path, but
allowed after the 24-hour window has closed (waypost_queue_operator_message_v3), for an approved
template only, never a marketing template to a contact who opted out (README "Consent"), and only with
parameters that fit the stored template (checked in the same transaction: Meta would answer 132000).
The conversation page's template picker sends through this endpoint too (static/inbox.js)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, ValidationError, field_validator
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from waypost.db import DictPool, fetch_all, fetch_one, fetch_optional
from waypost.errors import InvalidBody, MarketingRefused, NotFound, TemplateParameters, TemplateUnavailable
from waypost.logs import request_id_var
from waypost.template_params import (
    BODY_PARAM_MAX,
    HEADER_PARAM_MAX,
    URL_MAX,
    fill,
    graph_template,
    segments,
    shape,
    value_problem,
)
from waypost.text import clean_text
from webhook.inbox import present, store
from webhook.inbox.auth import operator_api
from webhook.limits import MESSAGE_LIMIT, BodyLimit
from webhook.state import app_state
from worker.tasks import defer_operator_send, operator_key


class ButtonParameter(BaseModel):
    index: int = Field(ge=0, le=9)  # the URL button's position in the template's buttons
    text: str = Field(max_length=URL_MAX)  # what its link's {{1}} becomes


class TemplateBody(BaseModel):
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=32)
    # the body's {{1}}, {{2}}... in order, or its named parameters ({"first_name": "Ana"}): a list fills
    # named ones in the order they appear
    parameters: list[str] | dict[str, str] = Field(default_factory=list)
    header_parameters: list[str] = Field(default_factory=list, max_length=10)  # a TEXT header's {{1}}
    button_parameters: list[ButtonParameter] = Field(default_factory=list, max_length=10)
    client_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{8,100}$")

    @field_validator("parameters")
    @classmethod
    def _not_too_many(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        if len(value) > 100:
            raise ValueError("at most 100 parameters")
        return value


@dataclasses.dataclass
class Values:
    """An operator's parameter values, cleaned and checked one by one (before the template is read)."""

    header: list[str]
    body: list[str] | dict[str, str]
    buttons: dict[int, str]

    @classmethod
    def of(cls, body: TemplateBody) -> Values:
        def checked(text: str, what: str, limit: int) -> str:
            value = clean_text(text)
            problem = value_problem(value, limit)
            if problem:
                raise TemplateParameters(f"{what} {problem}")
            return value

        header = [
            checked(t, f"header parameter {i}", HEADER_PARAM_MAX) for i, t in enumerate(body.header_parameters, 1)
        ]
        if isinstance(body.parameters, dict):
            values: list[str] | dict[str, str] = {
                key: checked(text, f"body parameter {{{{{key}}}}}", BODY_PARAM_MAX)
                for key, text in body.parameters.items()
            }
        else:
            values = [
                checked(t, f"body parameter {{{{{i}}}}}", BODY_PARAM_MAX) for i, t in enumerate(body.parameters, 1)
            ]
        buttons: dict[int, str] = {}
        for button in body.button_parameters:
            if button.index in buttons:
                raise TemplateParameters(f"button {button.index} is given twice")
            buttons[button.index] = checked(button.text, f"the parameter of button {button.index}", URL_MAX)
        return cls(header, values, buttons)

    def counts(self) -> dict[str, int]:
        return {"body": len(self.body), "header": len(self.header), "button": len(self.buttons)}


@dataclasses.dataclass
class Filled:
    template: dict[str, Any]  # the Graph API's `template` object
    shown: str  # the message as the contact reads it, for the conversation


def _graph(
    body: TemplateBody, header: dict[str, str], values: dict[str, str], buttons: dict[int, str], named: bool
) -> dict[str, Any]:
    return graph_template(body.name, body.language, header=header, body=values, buttons=buttons, named=named)


def fill_template(body: TemplateBody, values: Values, stored: dict[str, Any] | None) -> Filled:
    """The send's template object and its text, checked against the stored template (raises
    TemplateParameters). Without an approved stored template the values go as given: the queueing
    function refuses the send anyway (TEMPLATE_UNAVAILABLE)."""
    if stored is None or stored["status"] != "APPROVED":
        positional = list(values.body.values()) if isinstance(values.body, dict) else values.body
        keys = [str(i) for i in range(1, len(positional) + 1)]
        graph = _graph(
            body,
            dict(zip(keys, values.header, strict=False)),
            dict(zip(keys, positional, strict=False)),
            values.buttons,
            False,
        )
        return Filled(graph, f"[template {body.name}] " + " | ".join(positional))
    form = shape(stored["components"])
    label = f"template {body.name} ({body.language})"
    if form.unsupported:
        raise TemplateParameters(f"{label} cannot be sent from Waypost: {form.unsupported}")
    expected = {"body": stored["body_params"], "header": stored["header_params"], "button": stored["button_params"]}
    given = values.counts()
    if given != expected:
        wanted = ", ".join(f"{n} {part}" for part, n in expected.items())
        got = ", ".join(f"{n} {part}" for part, n in given.items())
        unsynced = "" if stored["components"] else " (its parts are not synced yet: run `waypost templates sync`)"
        raise TemplateParameters(
            f"{label} takes {wanted} parameter(s); {got} given{unsynced}", expected=expected, given=given
        )
    if isinstance(values.body, dict):
        if set(values.body) != set(form.body_params):
            names = ", ".join(form.body_params) or "none"
            raise TemplateParameters(f"{label} names its body parameters {names}; given {', '.join(values.body)}")
        body_values = {key: values.body[key] for key in form.body_params}
    else:
        body_values = dict(zip(form.body_params, values.body, strict=True))
    dynamic = {button.index: button for button in form.url_buttons}
    if set(values.buttons) != set(dynamic):
        indexes = ", ".join(str(i) for i in sorted(dynamic)) or "none"
        raise TemplateParameters(f"{label}'s URL buttons with a parameter are at index {indexes}")
    header_values = dict(zip(form.header_params, values.header, strict=True))
    links: dict[int, str] = {}
    for index, button in dynamic.items():
        links[index] = fill(button.url, {button.params[0]: values.buttons[index]})
        if len(links[index]) > URL_MAX:
            raise TemplateParameters(f"the link of button {index} would be longer than {URL_MAX} characters")
    graph = _graph(body, header_values, body_values, values.buttons, form.named)
    parts = [fill(form.header_text, header_values), fill(form.body_text, body_values), form.footer or ""]
    shown = "\n\n".join(part for part in parts if part)
    chips = [f"[{b.text}: {links[b.index]}]" if b.index in links else f"[{b.text}]" for b in form.buttons]
    return Filled(graph, "\n".join([shown, *chips]) if chips else shown)


async def send_template(
    pool: DictPool, conversation_id: int, body: TemplateBody, *, operator_id: int, pause_ai: bool, request_id: str
) -> store.Queued:
    """Queue the template and defer its send in one transaction; a repeated client_key sends nothing new.
    Parameters that do not fit the stored template are refused (422 TEMPLATE_PARAMETERS), after the
    conversation and the template themselves were found sendable: the queued row is rolled back."""
    key = operator_key(body.client_key or uuid.uuid4().hex)
    values = Values.of(body)
    async with pool.connection() as conn, conn.transaction():
        stored = await fetch_optional(conn, "template_for_send", name=body.name, language=body.language)
        misfit: TemplateParameters | None = None
        try:
            filled = fill_template(body, values, stored)
        except TemplateParameters as exc:
            misfit, filled = exc, fill_template(body, values, None)
        row = await fetch_one(
            conn,
            "template_queue_operator_message",
            conversation_id=conversation_id,
            idempotency_key=key,
            body=clean_text(filled.shown)[:4096],
            payload=Jsonb(filled.template),
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
            if misfit is not None:
                raise misfit  # rolls the queued message back
            await store.answered(conn, conversation_id, operator_id)
            await defer_operator_send(
                conn, message_id=row["message_id"], conversation_id=conversation_id, request_id=request_id
            )
        message = await fetch_one(conn, "inbox_message", message_id=row["message_id"])
    return store.Queued(message, duplicate=outcome == "duplicate")


async def picker_templates(pool: DictPool, conversation_id: int) -> list[dict[str, Any]]:
    """The approved templates as the conversation page's picker shows them: each with its parts cut
    for the preview, and why it cannot be sent to this contact (a marketing opt-out) or at all."""
    async with pool.connection() as conn:
        rows = await fetch_all(conn, "templates_for_picker", conversation_id=conversation_id)
    picked = []
    for row in rows:
        form = shape(row["components"])
        picked.append(
            {
                "name": row["name"],
                "language": row["language"],
                "category": (row["category"] or "").lower(),
                "unsupported": form.unsupported,
                "marketing_refused": row["category"] == "MARKETING" and not row["may_receive_marketing"],
                "shape": form,
                "header": segments(form.header_text),
                "body": segments(form.body_text),
                "buttons": [{"button": b, "url": segments(b.url) if b.params else []} for b in form.buttons],
                "limits": {"header": HEADER_PARAM_MAX, "body": BODY_PARAM_MAX, "button": URL_MAX},
            }
        )
    return picked


@operator_api
async def send_template_message(request: Request) -> Response:
    """
    ---
    summary: Send an approved message template as the signed-in operator, even after the 24-hour window
    description: >-
      Sent by the worker through the same idempotent path as any operator message; a repeated
      client_key sends nothing new. `parameters` fill the body's {{1}}, {{2}}... in order (or, as an
      object, its named parameters), `header_parameters` a TEXT header's, `button_parameters` the
      suffix of each URL button whose link ends in a parameter, by the button's index. Their counts
      must match the stored template's, and no value may be empty, hold a line break or a tab, or
      pass Meta's length limits (header 60, body 1024).
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
              parameters:
                oneOf:
                  - {type: array, items: {type: string}}
                  - {type: object, additionalProperties: {type: string}}
              header_parameters: {type: array, items: {type: string}, maxItems: 10}
              button_parameters:
                type: array
                maxItems: 10
                items:
                  type: object
                  required: [index, text]
                  properties: {index: {type: integer, minimum: 0, maximum: 9}, text: {type: string}}
              client_key: {type: string, pattern: "^[A-Za-z0-9_-]{8,100}$"}
    responses:
      202: {description: "{ok, message: Message, duplicate: boolean}"}
      404: {description: no such live conversation}
      409: {description: "TEMPLATE_UNAVAILABLE (not an approved template) or MARKETING_OPTED_OUT"}
      422: {description: "invalid body, or TEMPLATE_PARAMETERS (expected and given counts in the answer)"}
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
