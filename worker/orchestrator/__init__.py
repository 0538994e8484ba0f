"""The orchestrator ("the AI"): a conversation and its recent history in, an answer (or none) out.

Providers: `rules` (offline, deterministic, the default) and `openai` (any OpenAI-compatible
chat completions endpoint). `build_orchestrator` validates the configuration at worker start.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

from waypost.settings import ConfigurationError, Settings


@dataclasses.dataclass(frozen=True)
class Turn:
    author: Literal["contact", "ai", "operator"]
    text: str


@dataclasses.dataclass(frozen=True)
class ReplyRequest:
    conversation_id: int
    contact_name: str | None
    history: tuple[Turn, ...]  # oldest first, ending with the message to answer

    @property
    def message(self) -> Turn:
        return self.history[-1]


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the AI sends: a text, or a message of another WhatsApp type (`kind`) with its Graph
    object (`payload`, checked by waypost.kinds before the send); `text` is then what the inbox and
    later turns' history show for it."""

    text: str
    kind: str = "text"
    payload: dict[str, Any] | None = None


class OrchestratorError(Exception):
    """The provider could not produce an answer now (it may later: the job retries)."""


class Orchestrator(Protocol):
    name: str

    async def reply(self, request: ReplyRequest) -> Answer | None: ...

    async def aclose(self) -> None: ...


def build_orchestrator(settings: Settings) -> Orchestrator:
    if settings.orchestrator == "rules":
        from worker.orchestrator.rules import RulesOrchestrator

        return RulesOrchestrator.from_file(settings.rules_file, settings.ai_files_dir)
    if settings.orchestrator == "openai":
        from worker.orchestrator.openai_compat import OpenAIOrchestrator

        return OpenAIOrchestrator(settings)
    raise ConfigurationError(f"unknown WAYPOST_ORCHESTRATOR {settings.orchestrator!r}")
