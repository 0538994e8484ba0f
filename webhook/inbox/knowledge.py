"""The inbox's knowledge base page (/inbox/knowledge): the documents and question/answer pairs the AI
answers from, a document upload (Markdown, text, PDF), a pair form, removal, and a search that shows
what the AI would get for a customer's message. Plain forms (no script), each with the session's CSRF
token; every POST answers with a redirect back to the page (or the page with the refusal, 400).
What changes here counts from the worker's next turn (waypost.knowledge)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from waypost import knowledge
from waypost.errors import BadInput, InvalidBody
from webhook.inbox import pages, store
from webhook.inbox.auth import operator_page
from webhook.limits import FORM_LIMIT, BodyLimit
from webhook.state import app_state, path_for

# A document and the form around it; a pair's two fields as urlencoded escapes (up to 12 bytes a character).
UPLOAD_LIMIT = knowledge.MAX_DOCUMENT_BYTES + 64 * 1024
PAIR_LIMIT = 2 * knowledge.MAX_QA_CHARS * 12 + FORM_LIMIT


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidBody(f"{name}: a text field, not a file")
    return value or ""


async def _page(request: Request, status_code: int = 200, message: str | None = None) -> Response:
    state = app_state(request)
    query = request.query_params.get("q", "").strip()[:1000]
    async with state.pool.connection() as conn:
        documents = await knowledge.list_documents(conn)
        hits = await knowledge.search(conn, query, limit=state.settings.kb_passages) if query else []
    return pages.render(
        request,
        "knowledge.html",
        status_code,
        documents=documents,
        hits=hits,
        query=query,
        message=message,
        notice=request.query_params.get("done", "")[:200] if status_code == 200 else None,
        min_score=state.settings.kb_min_score,
        language=state.settings.kb_language,
    )


def _back(request: Request, done: str) -> Response:
    return RedirectResponse(f"{path_for(request, 'inbox:knowledge')}?{urlencode({'done': done})}", status_code=303)


@operator_page
async def knowledge_page(request: Request) -> Response:
    return await _page(request)


@operator_page
async def add_document(request: Request) -> Response:
    form = await request.form()
    upload = form.get("file")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise BadInput("choose a file to upload")
        data = await upload.read(knowledge.MAX_DOCUMENT_BYTES + 1)
        language = _text(form, "language").strip() or app_state(request).settings.kb_language
        async with app_state(request).pool.connection() as conn:
            document_id = await knowledge.add_file(
                conn,
                upload.filename,
                data,
                language=language,
                title=_text(form, "title").strip() or None,
                created_by=request.state.operator["email"],
            )
    except BadInput as exc:
        return await _page(request, 400, str(exc))
    return _back(request, f"Added document {document_id}")


@operator_page
async def add_pair(request: Request) -> Response:
    form = await request.form()
    try:
        question = store.check_text(_text(form, "question"), "the question")
        answer = store.check_text(_text(form, "answer"), "the answer")
        async with app_state(request).pool.connection() as conn:
            document_id = await knowledge.add_qa(
                conn,
                question,
                answer,
                language=app_state(request).settings.kb_language,
                created_by=request.state.operator["email"],
            )
    except BadInput as exc:
        return await _page(request, 400, str(exc))
    return _back(request, f"Added question/answer pair {document_id}")


@operator_page
async def remove_document(request: Request) -> Response:
    document_id = store.row_id(request.path_params["document_id"], "knowledge document")
    async with app_state(request).pool.connection() as conn:
        title = await knowledge.remove(conn, document_id)
    return _back(request, f"Removed {document_id}: {title}")


# The pages that answer their errors as pages (webhook/app.py gives them to pages.error_page)
PAGES = frozenset({knowledge_page, add_document, add_pair, remove_document})


# Mounted at /inbox with pages.routes (webhook/app.py)
routes: list[BaseRoute] = [
    Route("/knowledge", knowledge_page, methods=["GET"], name="knowledge"),
    Route(
        "/knowledge/documents",
        add_document,
        methods=["POST"],
        name="knowledge_add_document",
        middleware=[Middleware(BodyLimit, limit=UPLOAD_LIMIT)],
    ),
    Route(
        "/knowledge/pairs",
        add_pair,
        methods=["POST"],
        name="knowledge_add_pair",
        middleware=[Middleware(BodyLimit, limit=PAIR_LIMIT)],
    ),
    Route(
        "/knowledge/{document_id:int}/remove",
        remove_document,
        methods=["POST"],
        name="knowledge_remove",
        middleware=[Middleware(BodyLimit, limit=FORM_LIMIT)],
    ),
]
