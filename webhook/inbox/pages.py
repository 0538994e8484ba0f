"""The inbox's HTML pages (Jinja2), and the fragments the page script swaps in on live events.
Actions are made by the script through the JSON API; sign-in and sign-out are plain forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from webhook.errors import HttpError
from webhook.inbox import present, store
from webhook.inbox.auth import (
    SignInRefused,
    csrf_ok,
    csrf_token,
    current_operator,
    end_session,
    inbox_disabled,
    operator_page,
    sign_in,
)
from webhook.state import app_state

HERE = Path(__file__).parent
STATIC_PATH = "/inbox/static"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(
    status_labels=present.STATUS_LABELS,
    status_ticks=present.STATUS_TICKS,
    author_labels=present.AUTHOR_LABELS,
    filter_labels=present.FILTER_LABELS,
    contact_label=present.contact_label,
    first_error=present.first_error,
    error_text=present.error_text,
    filters=store.FILTERS,
    # a path, never an absolute URL: those would be built from the Host header the client sent
    static=lambda path: f"{STATIC_PATH}/{path}",
)
# Pages are the inbox's paths but its fragments, event stream and static files.
_NOT_PAGES = ("/inbox/fragments", "/inbox/events", STATIC_PATH)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("operator", getattr(request.state, "operator", None))
    context["csrf_token"] = csrf_token(request)
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def is_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/inbox") and not path.startswith(_NOT_PAGES)


def error_page(request: Request, exc: HttpError) -> Response:
    """An inbox page's refusal, as a page (the app's exception handler calls this)."""
    if exc.status == 404:
        return render(request, "missing.html", 404, what=str(exc).removesuffix(" not found"))
    return render(request, "error.html", exc.status, message=str(exc))


def safe_next(value: str | None) -> str:
    """Only a path inside the inbox: never an open redirect, nor a header broken by control characters."""
    if (
        value
        and value.startswith("/inbox")
        and not urlsplit(value).netloc
        and "\\" not in value
        and value.isprintable()
    ):
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
        shown = email if email.isprintable() else ""
        response = render(request, "login.html", refused.status, next=target, email=shown, message=str(refused))
        if refused.retry_after:
            response.headers["Retry-After"] = str(refused.retry_after)
        return response
    return RedirectResponse(target, status_code=303)


@operator_page
async def logout(request: Request) -> Response:
    await end_session(request, "signed_out")
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
    rows = await store.list_conversations(app_state(request).pool, **params)
    counts = await store.notification_counts(app_state(request).pool)
    query = request.url.query
    return render(request, "conversations.html", conversations=rows, counts=counts, partial_query=query, **params)


@operator_page
async def conversations_fragment(request: Request) -> Response:
    rows = await store.list_conversations(app_state(request).pool, **_list_params(request))
    return render(request, "_conversation_rows.html", conversations=rows)


@operator_page
async def conversation_page(request: Request) -> Response:
    pool = app_state(request).pool
    conversation_id = store.row_id(request.path_params["conversation_id"], "conversation")
    conversation = await store.conversation(pool, conversation_id)
    await store.mark_read(pool, conversation_id)
    messages = await store.messages(pool, conversation_id)
    counts = await store.notification_counts(pool)
    return render(request, "conversation.html", conversation=conversation, messages=messages, counts=counts)


@operator_page
async def conversation_fragment(request: Request) -> Response:
    pool = app_state(request).pool
    conversation_id = store.row_id(request.path_params["conversation_id"], "conversation")
    conversation = await store.conversation(pool, conversation_id)
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
