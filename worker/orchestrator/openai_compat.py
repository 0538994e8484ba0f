"""The `openai` provider: any OpenAI-compatible /chat/completions endpoint (OpenAI, Ollama, vLLM,
llama.cpp server...). OPENAI_BASE_URL includes the version prefix, e.g. https://api.openai.com/v1
or http://localhost:11434/v1. Retries 429, 5xx and transport errors with backoff (tenacity).

Each turn is one chat message worded by `Turn.describe` (captions, document names, transcripts,
reactions and quotes as text); a photo the reply run attached (OPENAI_VISION) goes with its turn as
an `image_url` part holding a data: URL, so no URL of ours is ever handed to the provider.

With knowledge base passages for the turn (worker/orchestrator/grounding.py) the system message
carries them and tells the model to answer only from them and the conversation, or else to call the
`hand_over` tool, whose call becomes a `Handover` (never a magic string in the text)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from waypost.settings import ConfigurationError, Settings
from worker.orchestrator import Answer, Handover, OrchestratorError, ReplyRequest, Turn, ai_files
from worker.orchestrator.knowledge_prompt import HAND_OVER_TOOL, grounded_prompt, handover_of
from worker.orchestrator.tools import TOOLS, tool_answer

logger = logging.getLogger(__name__)

ROLES = {"contact": "user", "ai": "assistant", "operator": "assistant"}


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def _content(turn: Turn) -> str | list[dict[str, Any]]:
    text = turn.describe()
    if turn.image is None:
        return text
    url = f"data:{turn.image.mime_type};base64,{base64.b64encode(turn.image.data).decode()}"
    return [{"type": "text", "text": text or "[a photo]"}, {"type": "image_url", "image_url": {"url": url}}]


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
        self.interactive = settings.openai_interactive  # offer reply buttons and lists (tools.py)
        self.files = ai_files.load(settings.ai_files_dir)  # offered through the send_file tool
        self._client = httpx.AsyncClient(
            base_url=settings.openai_base_url.rstrip("/"),
            headers=headers,
            timeout=settings.openai_timeout,
        )

    def messages(self, request: ReplyRequest) -> list[dict[str, Any]]:
        turns = [{"role": ROLES[turn.author], "content": _content(turn)} for turn in request.history]
        if request.tap_id is not None:  # the customer tapped a choice: its title is the text, and its id
            last = turns[-1]
            note = f" [tapped the choice with id {request.tap_id!r}]"
            if isinstance(last["content"], str):
                last["content"] += note
            else:
                last["content"][0]["text"] += note
        system = grounded_prompt(self.system_prompt, request.knowledge) if request.knowledge else self.system_prompt
        if request.turn_size > 1:  # a burst (README "Turns"): one answer to all of it
            system += f"\n\nThe last {request.turn_size} messages arrived together: answer them all in one reply."
        return [{"role": "system", "content": system}, *turns]

    async def _complete(self, body: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
        timeout = httpx.USE_CLIENT_DEFAULT if seconds is None else seconds  # the client's: OPENAI_TIMEOUT
        response = await self._client.post("/chat/completions", json=body, timeout=timeout)
        response.raise_for_status()
        return response.json()

    async def write(self, system: str, text: str, *, max_tokens: int, seconds: float) -> str:
        """One plain completion of `text` under `system` (the handover summary, worker.summary): once,
        no retry, no tools; its raw content ("" when none). Raises on any HTTP or shape failure."""
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
            "max_tokens": max_tokens,
        }
        content = (await self._complete(body, seconds))["choices"][0]["message"]["content"]
        return content if isinstance(content, str) else ""

    async def reply(self, request: ReplyRequest) -> Answer | Handover | None:
        body: dict[str, Any] = {"model": self.model, "messages": self.messages(request)}
        tools = [*(TOOLS if self.interactive else []), *([ai_files.tool(self.files)] if self.files else [])]
        if request.knowledge:
            tools.append(HAND_OVER_TOOL)
        if tools:
            body["tools"] = tools
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
        if request.knowledge and (handover := handover_of(message)):
            return handover
        if self.files and (sent := ai_files.from_tool_call(message, self.files)):
            return sent
        calls = message.get("tool_calls")
        if self.interactive and isinstance(calls, list) and calls:
            return tool_answer(calls[0], content if isinstance(content, str) else None)
        if not isinstance(content, str) or not content.strip():
            return None
        return Answer(content.strip())

    async def aclose(self) -> None:
        await self._client.aclose()
