"""Sending messages through the WhatsApp Cloud API, with every failure classified.

Meta offers no idempotency key, so the class of a failure decides what is safe:
  retryable  Meta answered with a transient error, or the request never left (connect failure);
  permanent  Meta refused it for a reason a retry cannot fix;
  ambiguous  the request may have been accepted (timeout or connection lost after sending):
             never resent at once; a status webhook or the sweep resolves it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import logging
import time
from typing import IO, Any, Literal

import httpx

from waypost.settings import Settings
from worker.graph_post import JsonPoster, MaybeSent, NotSent

logger = logging.getLogger(__name__)

# Graph error codes (reference A6). Anything else under HTTP 4xx is permanent, under 5xx retryable.
RETRYABLE_CODES = frozenset({130429, 131056, 131000, 131016, 131057, 1, 2, 4, 80007})
PERMANENT_CODES = frozenset({131047, 131026, 131050, 130403, 190, 100, 131008, 131009, 131021, 131051, 0, 10})
# A template Meta cannot send (paused, disabled, not in that language, parameters that do not fit it):
# permanent whatever the HTTP status, since resending the same template cannot help (docs/whatsapp.md).
TEMPLATE_CODES = frozenset({132000, 132001, 132005, 132007, 132008, 132012, 132015, 132016})

FailureKind = Literal["retryable", "permanent", "ambiguous"]


@dataclasses.dataclass
class SendFailed(Exception):
    kind: FailureKind
    reason: str
    code: int | None = None
    retry_after: float | None = None
    error: dict[str, Any] | None = None

    def __str__(self) -> str:
        return self.reason

    def as_errors(self) -> list[dict[str, Any]]:
        """In the shape of Meta's errors[], for messages.error and notifications."""
        return [self.error or {"code": self.code, "title": self.reason}]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def classify_response(response: httpx.Response) -> SendFailed:
    """A non-2xx answer from the Graph API, as a SendFailed of the right kind."""
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    reason = f"HTTP {response.status_code}" + (f" code {code}" if code is not None else "")
    if error.get("message") or details:
        reason += f": {details or error.get('message')}"
    if code in PERMANENT_CODES or code in TEMPLATE_CODES:
        kind: FailureKind = "permanent"
    elif code in RETRYABLE_CODES or response.status_code >= 500 or response.status_code == 429:
        kind = "retryable"
    else:
        kind = "permanent"
    return SendFailed(kind, reason, code, _retry_after(response), error or None)


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class OffHost(Exception):
    """A URL outside the hosts the access token may go to."""


class GraphClient:
    """One per worker process: a shared connection pool to the Graph API."""

    def __init__(self, settings: Settings) -> None:
        settings.check_sending()
        assert settings.whatsapp_access_token is not None
        self._version = settings.whatsapp_api_version
        self._media_hosts = frozenset(settings.media_hosts)
        token = settings.whatsapp_access_token.get_secret_value()
        # the send and the read receipt, once or twice per reply (worker.graph_post says why apart)
        self._poster = JsonPoster(
            settings.whatsapp_api_base,
            token,
            connect_timeout=settings.send_connect_timeout,
            read_timeout=settings.send_read_timeout,
        )
        self._client = httpx.AsyncClient(
            base_url=settings.whatsapp_api_base.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(
                connect=settings.send_connect_timeout,
                read=settings.send_read_timeout,
                write=settings.send_read_timeout,
                pool=settings.send_connect_timeout,
            ),
        )

    async def aclose(self) -> None:
        await self._poster.aclose()
        await self._client.aclose()

    async def media_info(self, media_id: str) -> httpx.Response:
        """GET /{media-id}: a fresh download URL (valid for minutes), the type, size and SHA-256."""
        return await self._client.get(f"/{self._version}/{media_id}")

    def stream_file(self, url: str) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """Stream a media URL with the access token, which only Meta's media hosts may receive
        (WHATSAPP_MEDIA_HOSTS): any other URL is refused here, before a byte is sent. Redirects are
        not followed, so the token cannot be carried elsewhere either."""
        parsed = httpx.URL(url)
        host = (parsed.host or "").lower()
        if host not in self._media_hosts:
            raise OffHost(f"media URL on {host or 'no host'}, not one of WHATSAPP_MEDIA_HOSTS: not fetched")
        if parsed.scheme != "https" and host not in LOOPBACK:  # plain HTTP only to this machine (dev, tests)
            raise OffHost(f"media URL over {parsed.scheme or 'no scheme'}, not HTTPS: not fetched")
        return self._client.stream("GET", url)

    async def upload_media(
        self, *, phone_number_id: str, file: IO[bytes], size: int, filename: str, mime_type: str
    ) -> str:
        """POST /{phone-number-id}/media: upload a file to send; returns Meta's media id (kept 30 days)
        or raises SendFailed. Never "ambiguous": no message has been sent yet, so any failure that
        is not Meta's refusal may simply be retried (an orphan upload costs nothing). The file is
        streamed from `file`; Meta's answer may take a second per MiB longer than a send's."""
        base = self._client.timeout
        timeout = httpx.Timeout(
            connect=base.connect, read=(base.read or 0) + size / 2**20, write=base.write, pool=base.pool
        )
        try:
            response = await self._client.post(
                f"/{self._version}/{phone_number_id}/media",
                data={"messaging_product": "whatsapp", "type": mime_type},
                files={"file": (filename, file, mime_type)},
                timeout=timeout,
            )
        except httpx.TransportError as exc:
            raise SendFailed("retryable", f"upload failed: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            try:
                return str(response.json()["id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SendFailed("retryable", f"upload: HTTP {response.status_code} without a media id") from exc
        failure = classify_response(response)
        failure.reason = f"upload failed: {failure.reason}"
        # the inbox shows the title: the file never reached Meta, no message was sent
        failure.error = {**(failure.error or {"code": failure.code}), "title": "Meta refused the file's upload"}
        raise failure

    async def block_users(self, *, phone_number_id: str, user: str, block: bool) -> httpx.Response:
        """POST (block) or DELETE (unblock) /{phone-number-id}/block_users for one user; the caller
        reads Meta's per-user answer (docs/whatsapp.md "Blocking users")."""
        body = {"messaging_product": "whatsapp", "block_users": [{"user": user}]}
        path = f"/{self._version}/{phone_number_id}/block_users"
        return await self._client.request("POST" if block else "DELETE", path, json=body)

    async def create_template(self, *, waba_id: str, body: dict[str, Any]) -> httpx.Response:
        """POST /{waba-id}/message_templates: submit a template for review; the caller reads Meta's
        answer, {id, status, category} or an error (docs/whatsapp.md "Creating templates")."""
        return await self._client.post(f"/{self._version}/{waba_id}/message_templates", json=body)

    async def templates_named(
        self, *, waba_id: str, name: str, fields: str, after: str | None = None
    ) -> httpx.Response:
        """GET /{waba-id}/message_templates filtered by name, one page (`after`: the next page's cursor)."""
        params = {"name": name, "fields": fields, "limit": "100"}
        if after:
            params["after"] = after
        return await self._client.get(f"/{self._version}/{waba_id}/message_templates", params=params)

    async def mark_read(self, *, phone_number_id: str, message_id: str, typing: bool) -> None:
        """POST /{phone-number-id}/messages with status "read": the inbound message `message_id` (and the
        earlier ones) show as read on the contact's phone, with "typing…" when `typing` (docs/whatsapp.md
        "Read receipts and the typing indicator"). Raises SendFailed; the caller bounds its time."""
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        if typing:
            body["typing_indicator"] = {"type": "text"}
        try:
            answer = await self._poster.post(f"/{self._version}/{phone_number_id}/messages", body)
        except (NotSent, MaybeSent) as exc:
            raise SendFailed("ambiguous", str(exc)) from exc
        if not answer.ok:
            raise classify_response(answer.as_httpx())

    async def send_message(
        self,
        *,
        phone_number_id: str,
        wa_id: str | None,
        user_id: str | None,
        kind: str,
        content: dict[str, Any],
        context_message_id: str | None,
        callback_data: str,
    ) -> str:
        """Send one message of WhatsApp type `kind` (text, image, document, interactive, reaction...)
        whose Graph object is `content`; returns the Graph message id (wamid) or raises SendFailed.

        Addressed with `to` when the phone number is known, else with `recipient` = the BSUID.
        """
        payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        if wa_id:
            payload["to"] = wa_id
        elif user_id:
            payload["recipient"] = user_id
        else:
            raise SendFailed("permanent", "the contact has neither a phone number nor a user id")
        payload.update({"type": kind, kind: content, "biz_opaque_callback_data": callback_data})
        if context_message_id:
            payload["context"] = {"message_id": context_message_id}
        try:
            answer = await self._poster.post(f"/{self._version}/{phone_number_id}/messages", payload)
        except NotSent as exc:
            raise SendFailed("retryable", f"not sent: {exc}") from exc
        except MaybeSent as exc:
            # Timed out or cut off after the request went out: Meta may have accepted it.
            raise SendFailed("ambiguous", f"outcome unknown: {exc}") from exc
        if answer.ok:
            try:
                return str(answer.json()["messages"][0]["id"])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise SendFailed("ambiguous", f"HTTP {answer.status} without a message id") from exc
        raise classify_response(answer.as_httpx())
