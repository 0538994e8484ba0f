"""The `rules` provider: keyword and regex rules from a TOML file, first match wins, else the fallback.

Rules match the words of the message answered (a text, a caption, a voice note's transcript, a
document's name, a reaction's emoji); a rule with `reaction = ["👍"]` matches a reaction with one of
those emojis (or a message that is only that emoji), whatever the skin tone."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from waypost.settings import ConfigurationError
from worker.orchestrator import ReplyRequest, Turn

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")


# Emoji variation selector and skin tones: 👍🏽 and ❤️ match a rule written 👍 or ❤
EMOJI_VARIANTS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


def emoji_key(text: str) -> str:
    return EMOJI_VARIANTS.sub("", text.strip())


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str] | None
    answer: str
    reactions: frozenset[str] = frozenset()

    def matches(self, turn: Turn) -> bool:
        if self.reactions and turn.kind in ("reaction", "text") and emoji_key(turn.text) in self.reactions:
            return True
        return self.pattern is not None and bool(self.pattern.search(turn.words))


def _compile(index: int, raw: dict[str, object]) -> Rule:
    name = str(raw.get("name") or f"rule {index + 1}")
    answer, keywords, regex = raw.get("answer"), raw.get("keywords"), raw.get("regex")
    reaction = raw.get("reaction")
    if not isinstance(answer, str) or not answer.strip():
        raise ConfigurationError(f"{name}: 'answer' must be a non-empty string")
    parts = []
    if keywords is not None:
        if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
            raise ConfigurationError(f"{name}: 'keywords' must be a list of non-empty strings")
        parts += [rf"\b{re.escape(k.strip())}\b" for k in keywords]
    if regex is not None:
        if not isinstance(regex, str):
            raise ConfigurationError(f"{name}: 'regex' must be a string")
        parts.append(f"(?:{regex})")
    reactions: frozenset[str] = frozenset()
    if reaction is not None:
        if not isinstance(reaction, list) or not all(isinstance(e, str) and emoji_key(e) for e in reaction):
            raise ConfigurationError(f"{name}: 'reaction' must be a list of emojis")
        reactions = frozenset(emoji_key(e) for e in reaction)
    if not parts and not reactions:
        raise ConfigurationError(f"{name}: give 'keywords', 'regex', 'reaction' or several")
    try:
        pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
    except re.error as exc:
        raise ConfigurationError(f"{name}: bad regex: {exc}") from exc
    return Rule(name, pattern, answer, reactions)


class RulesOrchestrator:
    name = "rules"

    def __init__(self, rules: list[Rule], fallback: str | None) -> None:
        self.rules = rules
        self.fallback = fallback

    @classmethod
    def from_file(cls, path: Path | None) -> RulesOrchestrator:
        path = path or DEFAULT_RULES
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read rules file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"rules file {path} is not valid TOML: {exc}") from exc
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ConfigurationError(f"{path}: 'rules' must be an array of tables ([[rules]])")
        fallback = data.get("fallback")
        if fallback is not None and not isinstance(fallback, str):
            raise ConfigurationError(f"{path}: 'fallback' must be a string")
        try:
            return cls([_compile(i, raw) for i, raw in enumerate(raw_rules)], fallback or None)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {exc}") from exc

    async def reply(self, request: ReplyRequest) -> str | None:
        answer = next((rule.answer for rule in self.rules if rule.matches(request.message)), self.fallback)
        if answer is None:
            return None
        return answer.replace("{contact_name}", request.contact_name or "there")

    async def aclose(self) -> None:
        return None
