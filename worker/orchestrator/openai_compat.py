"""The `openai` provider: any OpenAI-compatible /chat/completions endpoint (OpenAI, Ollama, vLLM,
llama.cpp server...). OPENAI_BASE_URL includes the version prefix, e.g. https://api.openai.com/v1
or http://localhost:11434/v1. Retries 429, 5xx and transport errors with backoff (tenacity)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from waypost.settings import ConfigurationError, Settings
from worker.orchestrator import Answer, OrchestratorError, ReplyRequest, ai_files

logger = logging.getLogger(__name__)

ROLES = {"contact": "user", "ai": "assistant", "operator": "assistant"}


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class OpenAIOrchestrator:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        if not settings.openai_base_url or not settings.openai_base_url.startswith(("http://", "https://")):
            raise ConfigurationError("OPENAI_BASE_URL must be an http(s) URL, e.g. https://api.openai.com/v1")
        if not settings.openai_model:
            raise ConfigurationError("OPENAI_MODEL is not set")
        headers = {}
        if settings.openai_api_key:
            headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
        self.model = settings.openai_model
        self.system_prompt = settings.system_prompt
        self.max_retries = settings.openai_max_retries
        self.files = ai_files.load(settings.ai_files_dir)  # offered through the send_file tool
        self._client = httpx.AsyncClient(
            base_url=settings.openai_base_url.rstrip("/"),
            headers=headers,
            timeout=settings.openai_timeout,
        )

    def messages(self, request: ReplyRequest) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system_prompt},
            *({"role": ROLES[turn.author], "content": turn.text} for turn in request.history),
        ]

    async def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._client.post("/chat/completions", json=body)
        response.raise_for_status()
        return response.json()

    async def reply(self, request: ReplyRequest) -> Answer | None:
        body: dict[str, Any] = {"model": self.model, "messages": self.messages(request)}
        if self.files:
            body["tools"] = [ai_files.tool(self.files)]
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_transient),
                stop=stop_after_attempt(self.max_retries + 1),
                wait=wait_random_exponential(multiplier=0.5, max=10),
                reraise=True,
            ):
                with attempt:
                    data = await self._complete(body)
        except (httpx.HTTPError, ValueError) as exc:
            raise OrchestratorError(f"{self._client.base_url}/chat/completions failed: {exc}") from exc
        try:
            message = data["choices"][0]["message"]
            content = message.get("content")  # null when the model only calls a tool
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise OrchestratorError(f"unexpected chat completion: {str(data)[:200]}") from exc
        if self.files and (sent := ai_files.from_tool_call(message, self.files)):
            return sent
        if not isinstance(content, str) or not content.strip():
            return None
        return Answer(content.strip())

    async def aclose(self) -> None:
        await self._client.aclose()
