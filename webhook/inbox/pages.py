"""The inbox's HTML pages (Jinja2), and the fragments the page script swaps in on live events.
Actions are made by the script through the JSON API; sign-in and sign-out are plain forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from waypost import contact_data
from waypost.errors import NotFound, SignInRefused, TooManySignIns, WaypostError
from waypost.logs import request_id_var
from webhook.errors import status_of
from webhook.inbox import contact, live, media, present, store
from webhook.inbox.auth import (
    csrf_ok,
    csrf_token,
    current_operator,
    end_session,
    operator_page,
    require_inbox,
    sign_in,
)
from webhook.inbox.templates import picker_templates
from webhook.limits import FORM_LIMIT, BodyLimit
from webhook.state import app_state, path_for

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


@jinja2.pass_context
def _path(context: jinja2.runtime.Context, name: str, /, **params: Any) -> str:
    return path_for(context["request"], name, **params)


@jinja2.pass_context
def _static(context: jinja2.runtime.Context, path: str) -> str:
    return path_for(context["request"], "inbox:static", path=path)


templates.env.globals.update(
    status_labels=present.STATUS_LABELS,
    status_ticks=present.STATUS_TICKS,
    author_labels=present.AUTHOR_LABELS,
    filter_labels=present.FILTER_LABELS,
    contact_label=present.contact_label,
    owner_of=present.owner_of,
    first_error=present.first_error,
    error_text=present.error_text,
    file_size=present.file_size,
    media_shown=media.kind_shown,
    tap_of=present.tap_of,
    interactive_of=present.interactive_of,
    filters=store.FILTERS,
    # paths, never absolute URLs (Starlette's url_for): those would be built from the client's Host header
    path=_path,
    static=_static,
)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("operator", getattr(request.state, "operator", None))
    context["csrf_token"] = csrf_token(request)
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(
    request: Request, exc: WaypostError, status: int, endpoints: frozenset[Any] | None = None
) -> Response | None:
    """A refusal as a page, if the request went to a page (not a fragment, the event stream or a
    static file; `endpoints`: every module's pages, PAGES by default); the app's exception handler
    answers the JSON envelope otherwise."""
    if request.scope.get("endpoint") not in (PAGES if endpoints is None else endpoints):
        return None
    if isinstance(exc, NotFound):
        return render(request, "missing.html", status, what=exc.what)
    return render(request, "error.html", status, message=str(exc))


def safe_next(request: Request, value: str | None) -> str:
    """Only a path inside the inbox: never an open redirect, nor a header broken by control characters."""
    home = path_for(request, "inbox")
    if value and value.startswith(home) and not urlsplit(value).netloc and "\\" not in value and value.isprintable():
        return value
    return home


async def login_page(request: Request) -> Response:
    require_inbox(request)
    target = safe_next(request, request.query_params.get("next"))
    if await current_operator(request) is not None:
        return RedirectResponse(target, status_code=303)
    return render(request, "login.html", next=target, message=None)


async def login(request: Request) -> Response:
    require_inbox(request)
    form = await request.form()
    target = safe_next(request, str(form.get("next") or ""))
    email = str(form.get("email") or "")
    if not await csrf_ok(request):
        return render(request, "login.html", 403, next=target, email=email, message="The form expired. Try again.")
    try:
        await sign_in(request, email, str(form.get("password") or ""))
    except SignInRefused as refused:  # the form again, with the reason: not an error page
        shown = email if email.isprintable() else ""
        status = status_of(refused)
        response = render(request, "login.html", status, next=target, email=shown, message=str(refused))
        if isinstance(refused, TooManySignIns):
            response.headers["Retry-After"] = str(refused.retry_after)
        return response
    return RedirectResponse(target, status_code=303)


@operator_page
async def logout(request: Request) -> Response:
    await end_session(request, "signed_out")
    return RedirectResponse(path_for(request, "inbox:login"), status_code=303)


def _list_params(request: Request) -> dict[str, Any]:
    params = request.query_params
    return {
        "q": params.get("q") or None,
        "filter": params.get("filter") or None,
        "deleted": present.flag(params, "deleted"),
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
    receipt = app_state(request).settings.read_receipts == "operator_open"  # the contact's phone shows it read too
    await store.mark_read(pool, conversation_id, receipt=receipt, request_id=request_id_var.get() or "")
    messages = await store.messages(pool, conversation_id)
    counts = await store.notification_counts(pool)
    consent = present.consent_json(await store.consent(pool, conversation_id))
    picker = await picker_templates(pool, conversation_id)  # the template picker (_template_picker.html)
    return render(
        request,
        "conversation.html",
        conversation=conversation,
        messages=messages,
        counts=counts,
        consent=consent,
        templates=picker,
    )


@operator_page
async def conversation_fragment(request: Request) -> Response:
    pool = app_state(request).pool
    conversation_id = store.row_id(request.path_params["conversation_id"], "conversation")
    conversation = await store.conversation(pool, conversation_id)
    messages = await store.messages(pool, conversation_id)
    consent = present.consent_json(await store.consent(pool, conversation_id))
    return render(request, "_conversation_body.html", conversation=conversation, messages=messages, consent=consent)


@operator_page
async def notifications_page(request: Request) -> Response:
    pool = app_state(request).pool
    rows, counts = await store.notifications(pool, include_snoozed=present.flag(request.query_params, "snoozed"))
    return render(
        request,
        "notifications.html",
        notifications=rows,
        counts=counts,
        show_snoozed=present.flag(request.query_params, "snoozed"),
    )


@operator_page
async def notifications_fragment(request: Request) -> Response:
    pool = app_state(request).pool
    rows, counts = await store.notifications(pool, include_snoozed=present.flag(request.query_params, "snoozed"))
    return render(request, "_notification_rows.html", notifications=rows, counts=counts)


@operator_page
async def media_file(request: Request) -> Response:
    """A contact's file (webhook.inbox.media decides inline or download)."""
    media_id = store.row_id(request.path_params["media_id"], "file")
    download = present.flag(request.query_params, "download")
    state = app_state(request)
    return await media.media_response(state.pool, state.media_store, media_id, download=download)


@operator_page
async def badge_fragment(request: Request) -> Response:
    counts = await store.notification_counts(app_state(request).pool)
    return render(request, "_badge.html", counts=counts)


@operator_page
async def erase_page(request: Request) -> Response:
    """Erasing the conversation's contact asks first: the page says what goes and what stays."""
    conversation_id = store.row_id(request.path_params["conversation_id"], "conversation")
    conversation = await store.conversation(app_state(request).pool, conversation_id)
    return render(request, "erase.html", conversation=conversation, message=None, erasure=None)


@operator_page
async def erase(request: Request) -> Response:
    conversation_id = store.row_id(request.path_params["conversation_id"], "conversation")
    if (await request.form()).get("confirm") != "erase":
        conversation = await store.conversation(app_state(request).pool, conversation_id)
        message = "Nothing was erased: type erase to confirm."
        return render(request, "erase.html", 400, conversation=conversation, message=message, erasure=None)
    erasure = await contact.contact_erase(request)
    return render(request, "erase.html", conversation=None, message=None, erasure=erasure)


@operator_page
async def export_html(request: Request) -> Response:
    """A download, never shown in the app's origin (the contact's words are in it, escaped; the app's
    CSP forbids inline scripts anyway)."""
    page = contact_data.as_html(await contact.contact_export(request))
    headers = {
        "Content-Disposition": 'attachment; filename="contact-export.html"',
        "Cache-Control": "no-store",
    }
    return Response(page, media_type="text/html; charset=utf-8", headers=headers)


# The pages answer their errors as pages; PAGES holds the endpoints (as routed) that are pages.
PAGES = frozenset(
    {login_page, login, logout, conversations_page, conversation_page, notifications_page, erase_page, erase}
)

# Mounted at /inbox (webhook/app.py); the bare /inbox is conversations_page, routed beside the mount.
form = [Middleware(BodyLimit, limit=FORM_LIMIT)]
routes: list[BaseRoute] = [
    Route("/login", login_page, methods=["GET"], name="login"),
    Route("/login", login, methods=["POST"], name="sign_in", middleware=form),
    Route("/logout", logout, methods=["POST"], name="logout", middleware=form),
    Route("/conversations/{conversation_id:int}", conversation_page, methods=["GET"], name="conversation"),
    Route("/notifications", notifications_page, methods=["GET"], name="notifications"),
    Route("/conversations/{conversation_id:int}/erase", erase_page, methods=["GET"], name="erase"),
    Route("/conversations/{conversation_id:int}/erase", erase, methods=["POST"], name="erase_contact", middleware=form),
    Route("/conversations/{conversation_id:int}/export.html", export_html, methods=["GET"], name="export"),
    Route("/fragments/conversations", conversations_fragment, methods=["GET"], name="conversations_fragment"),
    Route(
        "/fragments/conversations/{conversation_id:int}",
        conversation_fragment,
        methods=["GET"],
        name="conversation_fragment",
    ),
    Route("/fragments/notifications", notifications_fragment, methods=["GET"], name="notifications_fragment"),
    Route("/fragments/badge", badge_fragment, methods=["GET"], name="badge_fragment"),
    Route("/media/{media_id:int}", media_file, methods=["GET"], name="media"),
    Route("/events", live.events, methods=["GET"], name="events"),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]
