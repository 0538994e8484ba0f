"""An operator's file, sent from the inbox or the JSON API (multipart/form-data): checked against
what WhatsApp sends (waypost.attachments) before anything is stored, then queued with its message
and sent by the worker, which uploads it to Meta first. Starlette spools the upload to a temporary
file past 1 MB; it is read from there a chunk at a time, never whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import PurePosixPath, PureWindowsPath

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from waypost import attachments, kinds
from waypost.errors import BadInput, InvalidBody
from waypost.logs import request_id_var
from waypost.media_store import CHUNK_BYTES
from waypost.text import clean_text
from webhook.inbox import present, store
from webhook.inbox.auth import operator_api
from webhook.state import app_state

# The largest file Meta sends (a 100 MB document) and the form around it.
UPLOAD_LIMIT = kinds.MEDIA_SIZE_LIMITS["document"] + 64 * 1024
CLIENT_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidBody(f"{name}: a text field, not a file")
    return value or None


def _filename(raw: str | None) -> str | None:
    """The name the contact sees: no directories, no control characters, at most 240 characters."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    return clean_text("".join(c for c in name if c.isprintable())).strip()[:240] or None


def _client_key(form: FormData) -> str | None:
    key = _field(form, "client_key")
    if key is not None and not (8 <= len(key) <= 100 and set(key) <= CLIENT_KEY_CHARS):
        raise InvalidBody("client_key: 8 to 100 letters, digits, _ or -")
    return key


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    await upload.seek(0)
    while chunk := await upload.read(CHUNK_BYTES):
        yield chunk


@operator_api
async def send_file(request: Request) -> Response:
    """
    ---
    summary: Send a file (image, audio, video, document, sticker) as the signed-in operator
    description: >-
      multipart/form-data. Checked before anything is stored or sent: the declared type must be one
      WhatsApp sends for the kind, the first bytes must match it (UNSUPPORTED_FILE, 415 otherwise) and the
      size within Meta's limit for the kind (FILE_TOO_LARGE, 413). Queued at once in status `sending`; the
      worker uploads it to Meta's media endpoint and sends it through the same idempotent path as text:
      repeating a request with the same client_key stores and sends nothing new.
    tags: [conversations]
    parameters: [{name: conversation_id, in: path, required: true, schema: {type: integer}}]
    requestBody:
      required: true
      content:
        multipart/form-data:
          schema:
            type: object
            required: [file]
            properties:
              file: {type: string, format: binary}
              caption: {type: string, maxLength: 1024, description: not for audio or stickers}
              kind: {type: string, enum: [image, audio, video, document, sticker], description: default from the type}
              reply_to: {type: integer, description: the id of the message this one replies to}
              client_key: {type: string, pattern: "^[A-Za-z0-9_-]{8,100}$"}
    responses:
      202: {description: "{ok, message: Message, duplicate: boolean}"}
      404: {description: no such live conversation, or no such message to reply to}
      409: {description: "WINDOW_CLOSED: the 24-hour customer service window is closed"}
      413: {description: "FILE_TOO_LARGE: over Meta's limit for the kind"}
      415: {description: "UNSUPPORTED_FILE: a type WhatsApp does not send, or content that is not that type"}
    """
    state = app_state(request)
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidBody("file: attach a file")
    caption = _field(form, "caption")
    if caption is not None:
        caption = store.check_text(caption, "the caption").strip() or None
    if caption is not None and len(caption) > kinds.CAPTION_MAX:
        raise BadInput(f"the caption is longer than {kinds.CAPTION_MAX} characters")
    reply_to = _field(form, "reply_to")
    if reply_to is not None and not reply_to.isdigit():
        raise InvalidBody("reply_to: a message id")
    head = await upload.read(attachments.HEAD_BYTES)
    kind, mime_type = attachments.check_file(upload.content_type, upload.size or 0, head, _field(form, "kind"))
    if caption is not None and kind in ("audio", "sticker"):
        raise BadInput(f"WhatsApp sends no caption with {kind}")
    filename = _filename(upload.filename)
    queued = await store.send(
        state.pool,
        store.row_id(request.path_params["conversation_id"], "conversation"),
        operator_id=request.state.operator["id"],
        body=caption,
        client_key=_client_key(form),
        pause_ai=state.settings.operator_reply_pauses_ai,
        request_id=request_id_var.get() or "",
        kind=kind,
        payload=attachments.graph_object(kind, caption, filename),
        reply_to=store.row_id(reply_to, "message replied to") if reply_to else None,
        attachment=store.Attachment(kind, mime_type, filename, _chunks(upload)),
        media_store=state.media_store,
    )
    body = {"ok": True, "message": present.message_json(queued.message), "duplicate": queued.duplicate}
    return JSONResponse(body, status_code=202)
