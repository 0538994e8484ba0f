"""The `rules` provider: keyword and regex rules from a TOML file, first match wins, else the fallback."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from waypost.settings import ConfigurationError
from worker.orchestrator import Answer, ReplyRequest

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    answer: str


def _compile(index: int, raw: dict[str, object]) -> Rule:
    name = str(raw.get("name") or f"rule {index + 1}")
    answer, keywords, regex = raw.get("answer"), raw.get("keywords"), raw.get("regex")
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
    if not parts:
        raise ConfigurationError(f"{name}: give 'keywords', 'regex' or both")
    try:
        pattern = re.compile("|".join(parts), re.IGNORECASE)
    except re.error as exc:
        raise ConfigurationError(f"{name}: bad regex: {exc}") from exc
    return Rule(name, pattern, answer)


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

    async def reply(self, request: ReplyRequest) -> Answer | None:
        text = request.message.text
        answer = next((rule.answer for rule in self.rules if rule.pattern.search(text)), self.fallback)
        if answer is None:
            return None
        return Answer(answer.replace("{contact_name}", request.contact_name or "there"))

    async def aclose(self) -> None:
        return None
