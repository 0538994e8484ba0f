"""The inbox's HTML pages (Jinja2), and the fragments the page script swaps in on live events.
Actions are made by the script through the JSON API; sign-in and sign-out are plain forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from webhook.inbox import present, store
from webhook.inbox.auth import (
    SignInRefused,
    csrf_ok,
    csrf_token,
    current_operator,
    inbox_disabled,
    operator_page,
    sign_in,
)
from webhook.middleware import json_error
from webhook.state import app_state

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(
    status_labels=present.STATUS_LABELS,
    status_ticks=present.STATUS_TICKS,
    author_labels=present.AUTHOR_LABELS,
    contact_label=present.contact_label,
    first_error=present.first_error,
    error_text=present.error_text,
    filters=store.FILTERS,
)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("operator", getattr(request.state, "operator", None))
    context["csrf_token"] = csrf_token(request)
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def safe_next(value: str | None) -> str:
    """Only a path inside the inbox: never an open redirect."""
    if value and value.startswith("/inbox") and not urlsplit(value).netloc and "\\" not in value:
        return value
    return "/inbox"


async def login_page(request: Request) -> Response:
    if app_state(request).settings.session_secret is None:
        return inbox_disabled()
    if await current_operator(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return render(request, "login.html", next=safe_next(request.query_params.get("next")), message=None)


async def login(request: Request) -> Response:
    if app_state(request).settings.session_secret is None:
        return inbox_disabled()
    form = await request.form()
    target = safe_next(str(form.get("next") or ""))
    email = str(form.get("email") or "")
    if not await csrf_ok(request):
        return render(request, "login.html", 403, next=target, email=email, message="The form expired. Try again.")
    try:
        await sign_in(request, email, str(form.get("password") or ""))
    except SignInRefused as refused:
        status = 429 if refused.retry_after else 401
        response = render(request, "login.html", status, next=target, email=email, message=str(refused))
        if refused.retry_after:
            response.headers["Retry-After"] = str(refused.retry_after)
        return response
    return RedirectResponse(target, status_code=303)


@operator_page
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/inbox/login", status_code=303)


def _list_params(request: Request) -> dict[str, Any]:
    params = request.query_params
    return {
        "q": params.get("q") or None,
        "filter": params.get("filter") or None,
        "deleted": params.get("deleted") == "1",
    }


@operator_page
async def conversations_page(request: Request) -> Response:
    params = _list_params(request)
    try:
        rows = await store.list_conversations(app_state(request).pool, **params)
    except store.InboxError as exc:
        return json_error(exc.status, exc.code, str(exc))
    counts = await store.notification_counts(app_state(request).pool)
    query = request.url.query
    return render(request, "conversations.html", conversations=rows, counts=counts, partial_query=query, **params)


@operator_page
async def conversations_fragment(request: Request) -> Response:
    try:
        rows = await store.list_conversations(app_state(request).pool, **_list_params(request))
    except store.InboxError as exc:
        return json_error(exc.status, exc.code, str(exc))
    return render(request, "_conversation_rows.html", conversations=rows)


@operator_page
async def conversation_page(request: Request) -> Response:
    pool = app_state(request).pool
    conversation_id = int(request.path_params["conversation_id"])
    try:
        conversation = await store.conversation(pool, conversation_id)
    except store.InboxError:
        return render(request, "missing.html", 404, what="conversation")
    await store.mark_read(pool, conversation_id)
    messages = await store.messages(pool, conversation_id)
    counts = await store.notification_counts(pool)
    return render(request, "conversation.html", conversation=conversation, messages=messages, counts=counts)


@operator_page
async def conversation_fragment(request: Request) -> Response:
    pool = app_state(request).pool
    conversation_id = int(request.path_params["conversation_id"])
    try:
        conversation = await store.conversation(pool, conversation_id)
    except store.InboxError as exc:
        return json_error(exc.status, exc.code, str(exc))
    messages = await store.messages(pool, conversation_id)
    return render(request, "_conversation_body.html", conversation=conversation, messages=messages)


@operator_page
async def notifications_page(request: Request) -> Response:
    pool = app_state(request).pool
    counts = await store.notification_counts(pool)
    rows = await store.notifications(pool, include_snoozed=request.query_params.get("snoozed") == "1")
    return render(
        request,
        "notifications.html",
        notifications=rows,
        counts=counts,
        show_snoozed=request.query_params.get("snoozed") == "1",
    )


@operator_page
async def notifications_fragment(request: Request) -> Response:
    pool = app_state(request).pool
    counts = await store.notification_counts(pool)
    rows = await store.notifications(pool, include_snoozed=request.query_params.get("snoozed") == "1")
    return render(request, "_notification_rows.html", notifications=rows, counts=counts)


@operator_page
async def badge_fragment(request: Request) -> Response:
    counts = await store.notification_counts(app_state(request).pool)
    return render(request, "_badge.html", counts=counts)
