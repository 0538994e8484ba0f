"""The `rules` provider: keyword and regex rules from a TOML file, first match wins, else the fallback."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from waypost import kinds
from waypost.settings import ConfigurationError
from worker.orchestrator import Answer, ReplyRequest, ai_files

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    answer: str
    file: str | None = None  # a file of WAYPOST_AI_FILES_DIR sent as a document, `answer` its caption


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
    file = raw.get("file")
    if file is not None and (not isinstance(file, str) or not file or Path(file).name != file):
        raise ConfigurationError(f"{name}: 'file' must be the name of a file in WAYPOST_AI_FILES_DIR")
    return Rule(name, pattern, answer, file)


class RulesOrchestrator:
    name = "rules"

    def __init__(self, rules: list[Rule], fallback: str | None) -> None:
        self.rules = rules
        self.fallback = fallback

    @classmethod
    def from_file(cls, path: Path | None, files_dir: Path | None = None) -> RulesOrchestrator:
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
            rules = [_compile(i, raw) for i, raw in enumerate(raw_rules)]
            for rule in rules:
                if rule.file is not None:  # checked now: a rule never names a file that cannot be sent
                    if files_dir is None:
                        raise ConfigurationError(f"{rule.name}: 'file' needs WAYPOST_AI_FILES_DIR")
                    ai_files.check(files_dir / rule.file)
                    if len(rule.answer) > kinds.CAPTION_MAX:
                        raise ConfigurationError(
                            f"{rule.name}: a file's caption is at most {kinds.CAPTION_MAX} characters"
                        )
            return cls(rules, fallback or None)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {exc}") from exc

    async def reply(self, request: ReplyRequest) -> Answer | None:
        text = request.message.text
        rule = next((rule for rule in self.rules if rule.pattern.search(text)), None)
        answer = rule.answer if rule else self.fallback
        if answer is None:
            return None
        answer = answer.replace("{contact_name}", request.contact_name or "there")
        if rule is not None and rule.file is not None:
            return ai_files.answer(rule.file, answer)
        return Answer(answer)

    async def aclose(self) -> None:
        return None
