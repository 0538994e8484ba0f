"""The orchestrator ("the AI"): a conversation and its recent history in, an answer (or none) out.

Providers: `rules` (offline, deterministic, the default) and `openai` (any OpenAI-compatible
chat completions endpoint). `build_orchestrator` validates the configuration at worker start.

What a provider reads of each message is a `Turn`: its words (a text, a caption, a voice note's
transcript, a reaction's emoji), what kind of message it was, a document's name, the message it
quotes or reacts to, and, for a model that can see, the photo itself (`Turn.describe` is the one
wording of all that as text, for every provider that reads text).

Grounding (worker/orchestrator/grounding.py): each turn, the passages of the knowledge base that match
the customer's latest words reach the provider in `ReplyRequest.knowledge`; a provider that has no
grounded answer returns a `Handover` with its reason instead of an answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

from waypost.knowledge import Hit
from waypost.settings import ConfigurationError, Settings

Author = Literal["contact", "ai", "operator"]
# How a message without words is named to the AI
KIND_NAMES = {
    "image": "a photo",
    "audio": "a voice note",
    "video": "a video",
    "document": "a document",
    "sticker": "a sticker",
    "location": "a location",
    "contacts": "a contact card",
}


@dataclasses.dataclass(frozen=True)
class Image:
    """A photo for a model that can see it (OPENAI_VISION), within OPENAI_VISION_MAX_BYTES."""

    mime_type: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class Quote:
    """The message a turn replies to (`context.id`) or reacts to."""

    author: Author
    text: str  # its words, as its Turn would give them ("" when it had none)
    kind: str = "text"


@dataclasses.dataclass(frozen=True)
class Turn:
    author: Author
    text: str  # the words: a text, a caption, a voice note's transcript, a reaction's emoji ("" when none)
    kind: str = "text"  # the WhatsApp message type
    filename: str | None = None  # a document's name
    image: Image | None = None  # only on the message answered, only for a model that can see
    quoted: Quote | None = None  # what the contact replied to, or reacted to

    @property
    def words(self) -> str:
        """What text rules match: the words, and a document's name."""
        return " ".join(part for part in (self.text, self.filename) if part)

    @property
    def readable(self) -> bool:
        """Whether there is anything for the AI to answer (else the unreadable answer goes out)."""
        return bool(self.text.strip()) or self.image is not None

    def describe(self) -> str:
        """The turn as one text, for a model: what was sent, with what it quotes."""
        if self.kind == "reaction" and self.quoted is not None:
            return f"The customer reacted {self.text} to: {_quote(self.quoted)}"
        text = self.text
        if self.kind == "audio":
            text = f"[voice note, transcribed] {text}" if text else "[a voice note nobody could transcribe]"
        elif self.kind == "document":
            name = f' "{self.filename}"' if self.filename else ""
            text = f"[document{name}] {text}".rstrip()
        elif self.kind in KIND_NAMES:
            text = f"[{KIND_NAMES[self.kind]}] {text}".rstrip()
        if self.quoted is not None:
            whose = "your" if self.quoted.author != "contact" else "their own"
            text = f"(replying to {whose} message: {_quote(self.quoted)}) {text}"
        return text


def _quote(quote: Quote) -> str:
    words = quote.text if len(quote.text) <= 500 else quote.text[:500] + "…"
    return f'"{words}"' if words else f"[{KIND_NAMES.get(quote.kind, quote.kind)}]"


@dataclasses.dataclass(frozen=True)
class ReplyRequest:
    conversation_id: int
    contact_name: str | None
    history: tuple[Turn, ...]  # oldest first, ending with the message to answer
    # The message answered is a tap on a reply button, a list row or a template quick reply: the
    # choice's id (its title is the last turn's text). Rules match it (`taps`); the model is told it.
    tap_id: str | None = None
    # The knowledge base's passages above WAYPOST_KB_MIN_SCORE for this turn, best first (the
    # `rules` provider gets question/answer pairs only); `strict`: with none, hand over.
    knowledge: tuple[Hit, ...] = ()
    strict: bool = False
    # False: the knowledge base held no passage when the reply run started, so it is not searched
    # (a search round trip saved for every reply of a business without one)
    knowledge_base: bool = True
    # How many of the last history entries are the turn answered (README "Turns"): the customer's
    # messages of one burst, from its first (an operator's message sent meanwhile among them).
    turn_size: int = 1

    @property
    def message(self) -> Turn:
        """The message answered; for a turn of several, one holding all the customer's words of it,
        a line each (rules match them together, `{message}` quotes them all)."""
        last = self.history[-1]
        if self.turn_size <= 1:
            return last
        said = [turn.text for turn in self.history[-self.turn_size :] if turn.author == "contact" and turn.text.strip()]
        return dataclasses.replace(last, text="\n".join(said), quoted=None) if len(said) > 1 else last

    def customer_words(self, turns: int | None = None) -> str:
        """The customer's latest words: their messages since the business last spoke (at most
        `turns`, by default the turn's or 3), what a knowledge search looks for."""
        turns = turns or max(3, self.turn_size)
        latest: list[str] = []
        for turn in reversed(self.history):
            if turn.author != "contact" or len(latest) == turns:
                break
            latest.append(turn.words)
        return " ".join(reversed(latest)).strip()


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the AI sends: a text, or a message of another WhatsApp type (`kind`) with its Graph
    object (`payload`, checked by waypost.kinds before the send); `text` is then what the inbox and
    later turns' history show for it."""

    text: str
    kind: str = "text"
    payload: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Handover:
    """No answer from the AI: the conversation needs a person, for `reason` (the model's hand_over
    tool, or no knowledge passage above the score in strict grounding). The reply is skipped with
    the skip reason "handover: <reason>" and the operators are notified (ai_no_reply)."""

    reason: str


class OrchestratorError(Exception):
    """The provider could not produce an answer now (it may later: the job retries)."""


class Orchestrator(Protocol):
    name: str

    async def reply(self, request: ReplyRequest) -> Answer | Handover | None: ...

    async def aclose(self) -> None: ...


def reads_images(settings: Settings) -> bool:
    """Whether the configured AI sees photos (the `openai` provider with OPENAI_VISION)."""
    return settings.orchestrator == "openai" and settings.openai_vision


def build_orchestrator(settings: Settings) -> Orchestrator:
    if settings.orchestrator == "rules":
        from worker.orchestrator.rules import RulesOrchestrator

        return RulesOrchestrator.from_file(settings.rules_file, settings.ai_files_dir)
    if settings.orchestrator == "openai":
        from worker.orchestrator.openai_compat import OpenAIOrchestrator

        return OpenAIOrchestrator(settings)
    raise ConfigurationError(f"unknown WAYPOST_ORCHESTRATOR {settings.orchestrator!r}")
