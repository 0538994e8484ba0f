"""Operators draft a new message template in the inbox and submit it for Meta's approval: the page
(/inbox/templates: the account's templates and the drafts with their status; /inbox/templates/new:
the form) and the JSON API (POST /api/inbox/templates). Both check the draft against what Meta would
refuse (waypost/template_drafts.py) and store it with its submission job in one transaction; the
worker submits it (worker/template_drafts.py, reached through the task facade). A resubmitted form
(the same client_key) stores and submits one draft. README "Message templates".
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from waypost.db import DictPool, fetch_all, fetch_one, fetch_optional
from waypost.errors import NotFound, TemplateDraftInvalid, TemplateExists, TemplatesOff
from waypost.logs import request_id_var
from waypost.template_drafts import TemplateDraft, validation_problems
from webhook.inbox import present, store
from webhook.inbox.auth import operator_api, operator_page
from webhook.inbox.pages import render
from webhook.limits import MESSAGE_LIMIT, BodyLimit
from webhook.state import app_state, path_for
from worker.tasks import defer_template_submission

RECENT_DRAFTS = 50
CLIENT_KEY = re.compile(r"[A-Za-z0-9_-]{8,100}")
CATEGORIES = ("UTILITY", "MARKETING", "AUTHENTICATION")
IN_FLIGHT = ("queued", "submitting")


def waba_of(request: Request) -> str:
    waba_id = app_state(request).settings.whatsapp_business_account_id
    if not waba_id:
        raise TemplatesOff()
    return waba_id


def parse_draft(data: Any) -> TemplateDraft:
    """The draft (a dict, or JSON bytes), or TemplateDraftInvalid with every problem by field."""
    try:
        if isinstance(data, bytes):
            draft = TemplateDraft.model_validate_json(data)
        else:
            draft = TemplateDraft.model_validate(data)
    except ValidationError as exc:
        raise TemplateDraftInvalid(validation_problems(exc)) from None
    problems = draft.problems()
    if problems:
        raise TemplateDraftInvalid(problems)
    return draft


async def store_draft(
    pool: DictPool, draft: TemplateDraft, *, waba_id: str, operator_id: int, request_id: str
) -> tuple[dict[str, Any], bool]:
    """Store the draft and queue its submission in one transaction: (the draft as shown, duplicate).
    A client_key stored already answers its draft; a name and language Meta lists (or a draft of
    them still on its way) is refused with TemplateExists."""
    key = draft.client_key or uuid.uuid4().hex
    async with pool.connection() as conn, conn.transaction():
        row = await fetch_optional(conn, "template_draft_by_key", client_key=key)
        duplicate = row is not None
        if row is None:
            taken = await fetch_optional(conn, "template_name_taken", name=draft.name, language=draft.language)
            if taken is not None:
                raise TemplateExists(
                    f"a template named {draft.name} in {draft.language} exists already (status {taken['status']}): "
                    "pick another name"
                )
            row = await fetch_optional(
                conn,
                "template_draft_insert",
                client_key=key,
                operator_id=operator_id,
                waba_id=waba_id,
                name=draft.name,
                language=draft.language,
                category=draft.category,
                request=Jsonb(draft.graph_body()),
                request_id=request_id,
            )
            if row is None:
                # Its key, or its name, was taken since the lookup above: the key by this same form sent
                # again (a double click) and committed meanwhile, which is its one draft; else the name
                # by another draft on its way to Meta. Only the insert's unique indexes tell these apart.
                row = await fetch_optional(conn, "template_draft_by_key", client_key=key)
                if row is None:
                    raise TemplateExists(f"a draft of {draft.name} in {draft.language} is being submitted already")
                duplicate = True
            else:
                await defer_template_submission(conn, draft_id=row["id"], request_id=request_id)
        shown = await fetch_one(conn, "template_draft", draft_id=row["id"])
    return dict(shown), duplicate


def draft_json(row: dict[str, Any]) -> dict[str, Any]:
    """A draft as the API answers it; `shown_status` is what the page shows."""
    error = row.get("error") or None
    return {
        "id": row["id"],
        "name": row["name"],
        "language": row["language"],
        "category": row["category"],
        "status": row["status"],
        "attempts": row["attempts"],
        "template_id": row["template_id"],
        "meta_status": row["meta_status"],
        "template_status": row.get("template_status"),
        "rejected_reason": row.get("rejected_reason"),
        "error": error,
        "error_text": refusal_text(error) if row["status"] == "refused" else None,
        "shown_status": shown_status(row),
        "operator": row.get("operator_email"),
        "created_at": present.iso(row["created_at"]),
        "finished_at": present.iso(row["finished_at"]),
    }


def shown_status(row: dict[str, Any]) -> str:
    if row["status"] in IN_FLIGHT:
        return "SUBMITTING"
    if row["status"] == "refused":
        return "NOT SUBMITTED"
    return str(row.get("template_status") or row.get("meta_status") or "PENDING")


def refusal_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    parts = [error.get("message"), error.get("error_user_title"), error.get("error_user_msg")]
    text = " — ".join(str(part) for part in parts if part)
    code = error.get("code")
    return f"{text} (code {code})" if code is not None else text


async def listing(pool: DictPool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with pool.connection() as conn:
        templates = [dict(row) for row in await fetch_all(conn, "template_drafts_templates")]
        drafts = [draft_json(row) for row in await fetch_all(conn, "template_drafts_recent", limit=RECENT_DRAFTS)]
    return templates, drafts


# The JSON API (mounted at /api/inbox)


@operator_api
async def create_draft(request: Request) -> Response:
    """
    ---
    summary: Draft a message template and submit it to Meta for approval
    description: >-
      Checked against what Meta's create-template API refuses (name, language, category, a text
      header, the body's {{1}}, {{2}}... with one example each, footer, quick-reply, URL and
      phone-number buttons), stored, and submitted by the worker. A repeated client_key answers the
      same draft and submits nothing new. Its status then shows in GET /api/inbox/templates.
    tags: [templates]
    requestBody:
      required: true
      content:
        application/json:
          schema:
            type: object
            required: [name, language, category, body]
            properties:
              name: {type: string, description: "lowercase letters, digits and underscores, max 512"}
              language: {type: string, description: "e.g. en_US"}
              category: {type: string, enum: [UTILITY, MARKETING, AUTHENTICATION]}
              header: {type: string, description: "text header, max 60, at most {{1}}"}
              header_example: {type: string}
              body: {type: string, description: "max 1024, parameters {{1}}, {{2}}..."}
              body_examples: {type: array, items: {type: string}}
              footer: {type: string, description: max 60}
              buttons:
                type: array
                items:
                  type: object
                  required: [type, text]
                  properties:
                    type: {type: string, enum: [QUICK_REPLY, URL, PHONE_NUMBER]}
                    text: {type: string}
                    url: {type: string}
                    example: {type: string}
                    phone_number: {type: string}
              client_key: {type: string, pattern: "^[A-Za-z0-9_-]{8,100}$"}
    responses:
      202: {description: "{ok, draft: TemplateDraft, duplicate: boolean}"}
      409: {description: "TEMPLATE_EXISTS: the name and language are taken"}
      422: {description: "TEMPLATE_DRAFT_INVALID, with `problems`: {field: message}"}
      503: {description: "TEMPLATES_OFF: WHATSAPP_BUSINESS_ACCOUNT_ID is not set"}
    """
    waba_id = waba_of(request)
    draft = parse_draft(await request.body())
    row, duplicate = await store_draft(
        app_state(request).pool,
        draft,
        waba_id=waba_id,
        operator_id=request.state.operator["id"],
        request_id=request_id_var.get() or "",
    )
    return JSONResponse({"ok": True, "draft": draft_json(row), "duplicate": duplicate}, status_code=202)


@operator_api
async def list_drafts(request: Request) -> Response:
    """
    ---
    summary: The account's message templates with their status, and the latest drafts
    tags: [templates]
    responses:
      200: {description: "{ok, templates: [Template], drafts: [TemplateDraft]}"}
    """
    templates, drafts = await listing(app_state(request).pool)
    shown = [{**row, "updated_at": present.iso(row["updated_at"])} for row in templates]
    return JSONResponse({"ok": True, "templates": shown, "drafts": drafts})


@operator_api
async def get_draft(request: Request) -> Response:
    """
    ---
    summary: One template draft and its status
    tags: [templates]
    parameters: [{name: draft_id, in: path, required: true, schema: {type: integer}}]
    responses:
      200: {description: "{ok, draft: TemplateDraft}"}
      404: {description: no such draft}
    """
    draft_id = store.row_id(request.path_params["draft_id"], "template draft")
    async with app_state(request).pool.connection() as conn:
        row = await fetch_optional(conn, "template_draft", draft_id=draft_id)
    if row is None:
        raise NotFound.of("template draft")
    return JSONResponse({"ok": True, "draft": draft_json(dict(row))})


# The pages (mounted at /inbox)

FORM_FIELDS = (
    "name",
    "language",
    "category",
    "header",
    "header_example",
    "body",
    "body_examples",
    "footer",
    "quick_replies",
    "url_text",
    "url",
    "url_example",
    "phone_text",
    "phone_number",
)


def form_values(form: FormData) -> dict[str, str]:
    return {field: str(form.get(field) or "") for field in FORM_FIELDS}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def draft_from_form(values: dict[str, str], client_key: str) -> tuple[dict[str, Any], list[str]]:
    """The form as the API's draft, and which form field each button came from (for its errors)."""
    buttons: list[dict[str, Any]] = []
    sources: list[str] = []
    for text in _lines(values["quick_replies"]):
        buttons.append({"type": "QUICK_REPLY", "text": text})
        sources.append("quick_replies")
    if values["url_text"].strip() or values["url"].strip():
        button = {"type": "URL", "text": values["url_text"], "url": values["url"], "example": values["url_example"]}
        buttons.append(button)
        sources.append("url")
    if values["phone_text"].strip() or values["phone_number"].strip():
        buttons.append({"type": "PHONE_NUMBER", "text": values["phone_text"], "phone_number": values["phone_number"]})
        sources.append("phone_number")
    data = {
        "name": values["name"],
        "language": values["language"],
        "category": values["category"],
        "header": values["header"] or None,
        "header_example": values["header_example"] or None,
        "body": values["body"],
        "body_examples": _lines(values["body_examples"]),
        "footer": values["footer"] or None,
        "buttons": buttons,
        "client_key": client_key,
    }
    return data, sources


def form_errors(problems: dict[str, str], sources: list[str]) -> dict[str, str]:
    """Problems keyed by the form's fields: a button's by the field it came from."""
    shown: dict[str, str] = {}
    for field, message in problems.items():
        target = field.split(".")[0]
        if target == "buttons":
            parts = field.split(".")
            index = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            target = sources[index] if index is not None and index < len(sources) else "quick_replies"
        elif target not in FORM_FIELDS:
            target = "form"
        shown.setdefault(target, message)
    return shown


def new_client_key() -> str:
    return uuid.uuid4().hex


@operator_page
async def templates_page(request: Request) -> Response:
    templates, drafts = await listing(app_state(request).pool)
    counts = await store.notification_counts(app_state(request).pool)
    shown = request.query_params.get("draft")
    return render(
        request,
        "templates.html",
        templates=templates,
        drafts=drafts,
        counts=counts,
        highlighted=int(shown) if shown and shown.isdigit() else None,
        waba_set=bool(app_state(request).settings.whatsapp_business_account_id),
    )


def _form(request: Request, status: int, values: dict[str, str], client_key: str, errors: dict[str, str]) -> Response:
    return render(
        request,
        "template_new.html",
        status,
        values=values,
        client_key=client_key,
        errors=errors,
        categories=CATEGORIES,
        waba_set=bool(app_state(request).settings.whatsapp_business_account_id),
    )


@operator_page
async def new_template_page(request: Request) -> Response:
    values = dict.fromkeys(FORM_FIELDS, "")
    values.update(language="en_US", category="UTILITY")
    return _form(request, 200, values, new_client_key(), {})


@operator_page
async def submit_template_form(request: Request) -> Response:
    form = await request.form()
    values = form_values(form)
    client_key = str(form.get("client_key") or "")
    if not CLIENT_KEY.fullmatch(client_key):  # a form not from this page: a key of its own
        client_key = new_client_key()
    data, sources = draft_from_form(values, client_key)
    try:
        waba_id = waba_of(request)
        draft = parse_draft(data)
        row, _ = await store_draft(
            app_state(request).pool,
            draft,
            waba_id=waba_id,
            operator_id=request.state.operator["id"],
            request_id=request_id_var.get() or "",
        )
    except TemplateDraftInvalid as invalid:
        return _form(request, 422, values, client_key, form_errors(invalid.problems, sources))
    except TemplateExists as taken:
        return _form(request, 409, values, client_key, {"name": str(taken)})
    except TemplatesOff as off:
        return _form(request, 503, values, client_key, {"form": str(off)})
    target = path_for(request, "inbox:templates") + f"?draft={row['id']}"
    return RedirectResponse(target, status_code=303)


form_limit = [Middleware(BodyLimit, limit=MESSAGE_LIMIT)]  # a 1,024-character body, percent-encoded

api_routes: list[BaseRoute] = [
    Route("/templates", list_drafts, methods=["GET"], name="template_drafts"),
    Route("/templates", create_draft, methods=["POST"], name="draft_template", middleware=form_limit),
    Route("/templates/drafts/{draft_id:int}", get_draft, methods=["GET"], name="template_draft"),
]

# The pages that answer their errors as pages (webhook/app.py gives them to pages.error_page)
PAGES = frozenset({templates_page, new_template_page, submit_template_form})
page_routes: list[BaseRoute] = [
    Route("/templates", templates_page, methods=["GET"], name="templates"),
    Route("/templates/new", new_template_page, methods=["GET"], name="new_template"),
    Route("/templates/new", submit_template_form, methods=["POST"], name="submit_template", middleware=form_limit),
]
