"""The client of an OpenAI-compatible transcription endpoint (`POST {WAYPOST_TRANSCRIBE_URL}/audio/
transcriptions`: OpenAI, a whisper.cpp or vLLM server...). The file is sent as multipart/form-data,
streamed from whatever async iterator of chunks the caller gives (httpx's own multipart reads files
synchronously, so the body is framed here, with its exact Content-Length). The API key goes to that
URL only."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import httpx

from waypost.settings import ConfigurationError, Settings
from waypost.text import clean_text, mime_base

MIME_TYPE = re.compile(r"[a-z0-9.+-]+/[a-z0-9.+-]+")
# A transcript longer than this is cut: a one-hour voice note is not an answerable message anyway.
MAX_TRANSCRIPT_CHARS = 10_000
# The file name tells OpenAI the format (it refuses names it does not know).
EXTENSIONS = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/webm": "webm",
}


class TranscriptionFailed(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Transcriber:
    """The client of the transcription endpoint, one per worker (built at start: a bad URL stops it)."""

    def __init__(self, settings: Settings) -> None:
        url = (settings.transcribe_url or "").strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError("WAYPOST_TRANSCRIBE_URL must be an http(s) URL, e.g. https://api.openai.com/v1")
        headers = {}
        key = settings.secret("transcribe_api_key")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.url = f"{url}/audio/transcriptions"
        self.model = settings.transcribe_model
        self._client = httpx.AsyncClient(headers=headers, timeout=settings.transcribe_timeout)

    async def transcribe(self, chunks: AsyncIterator[bytes], size: int, mime_type: str | None) -> str:
        base = mime_base(mime_type)
        if not MIME_TYPE.fullmatch(base):  # it goes into a part's header: a type, nothing else
            base = "audio/ogg"
        filename = f"voice.{EXTENSIONS.get(base, 'ogg')}"
        boundary = secrets.token_hex(16)
        head = b"".join(
            _field(boundary, name, value) for name, value in (("model", self.model), ("response_format", "json"))
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {base}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        async def body() -> AsyncIterator[bytes]:
            yield head
            async for chunk in chunks:
                yield chunk
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail)),
        }
        try:
            response = await self._client.post(self.url, content=body(), headers=headers)
        except httpx.HTTPError as exc:
            raise TranscriptionFailed(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code != 200:
            retryable = response.status_code == 429 or response.status_code >= 500
            raise TranscriptionFailed(f"HTTP {response.status_code}: {response.text[:200]}", retryable=retryable)
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TranscriptionFailed(f"unexpected answer: {response.text[:200]}", retryable=False) from exc
        if not isinstance(text, str):
            raise TranscriptionFailed("the answer's text is not a string", retryable=False)
        return clean_text(text).strip()[:MAX_TRANSCRIPT_CHARS]

    async def aclose(self) -> None:
        await self._client.aclose()


def _field(boundary: str, name: str, value: str) -> bytes:
    return f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
