"""The `rules` provider: keyword and regex rules from a TOML file, first match wins, else the fallback.

A rule may answer with reply buttons or a list (checked against Meta's limits when the file is
loaded, so a rule Meta would refuse stops the worker at start, not a customer's reply), and may
match a tap on a button or list row by its id (`taps`): tap rules are tried before text rules.

Rules match the words of the message answered (a text, a caption, a voice note's transcript, a
document's name, a reaction's emoji); a rule with `reaction = ["👍"]` matches a reaction with one of
those emojis (or a message that is only that emoji), whatever the skin tone.

When no rule matches, the best question/answer pair of the knowledge base above WAYPOST_KB_MIN_SCORE
(`ReplyRequest.knowledge`, worker/orchestrator/grounding.py) is the answer, as written; with none,
strict grounding hands over, else the fallback goes out."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from waypost import kinds
from waypost.settings import ConfigurationError
from worker.orchestrator import Answer, Handover, ReplyRequest, Turn, ai_files
from worker.orchestrator.grounding import NO_PASSAGE
from worker.orchestrator.tools import buttons_object, list_object

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")
MAX_BUTTONS = 3  # Meta's limits (docs/whatsapp.md, "Sending other kinds"), named here for the message
MAX_ROWS = 10


# Emoji variation selector and skin tones: 👍🏽 and ❤️ match a rule written 👍 or ❤
EMOJI_VARIANTS = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


def emoji_key(text: str) -> str:
    return EMOJI_VARIANTS.sub("", text.strip())


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str] | None
    answer: str
    taps: frozenset[str] = frozenset()
    interactive: dict[str, Any] | None = None  # the checked Graph object; its body is `answer`
    reactions: frozenset[str] = frozenset()
    file: str | None = None  # a file of WAYPOST_AI_FILES_DIR sent as a document, `answer` its caption

    def matches(self, turn: Turn) -> bool:
        if self.reactions and turn.kind in ("reaction", "text") and emoji_key(turn.text) in self.reactions:
            return True
        return self.pattern is not None and bool(self.pattern.search(turn.words))


def _strings(name: str, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigurationError(f"{name}: '{key}' must be a list of non-empty strings")
    return [v.strip() for v in value]


def _tables(name: str, key: str, value: object, allowed: frozenset[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigurationError(f"{name}: '{key}' must be a list of tables, e.g. [{{id = 'a', title = 'A'}}]")
    unknown = sorted({k for v in value for k in v} - allowed)
    if unknown:  # a misspelt 'description' would otherwise vanish without a word
        raise ConfigurationError(f"{name}: '{key}' takes {', '.join(sorted(allowed))}, not {', '.join(unknown)}")
    return value


def _interactive(name: str, answer: str, buttons: object, listed: object) -> dict[str, Any] | None:
    """The rule's reply buttons or list, checked by waypost.kinds; a clear error naming the rule."""
    if buttons is not None and listed is not None:
        raise ConfigurationError(f"{name}: give 'buttons' or 'list', not both")
    try:
        if buttons is not None:
            items = _tables(name, "buttons", buttons, frozenset({"id", "title"}))
            if len(items) > MAX_BUTTONS:
                raise ConfigurationError(f"{name}: at most {MAX_BUTTONS} buttons (Meta's limit), not {len(items)}")
            return buttons_object(answer, items)
        if listed is not None:
            if not isinstance(listed, dict):
                raise ConfigurationError(f"{name}: 'list' must be a table: {{button = '...', rows = [...]}}")
            if not isinstance(listed.get("button"), str):
                raise ConfigurationError(
                    f"{name}: 'list' needs 'button', the label that opens it (at most 20 characters)"
                )
            rows = _tables(name, "list.rows", listed.get("rows"), frozenset({"id", "title", "description"}))
            if len(rows) > MAX_ROWS:
                raise ConfigurationError(f"{name}: a list has at most {MAX_ROWS} rows (Meta's limit), not {len(rows)}")
            return list_object(answer, listed.get("button"), rows, listed.get("section"))
    except kinds.InvalidMessage as exc:
        raise ConfigurationError(f"{name}: {exc} (Meta's limits: docs/whatsapp.md)") from exc
    return None


def _compile(index: int, raw: dict[str, object]) -> Rule:
    name = str(raw.get("name") or f"rule {index + 1}")
    answer, keywords, regex, taps = raw.get("answer"), raw.get("keywords"), raw.get("regex"), raw.get("taps")
    reaction = raw.get("reaction")
    if not isinstance(answer, str) or not answer.strip():
        raise ConfigurationError(f"{name}: 'answer' must be a non-empty string")
    parts = []
    if keywords is not None:
        parts += [rf"\b{re.escape(k)}\b" for k in _strings(name, "keywords", keywords)]
    if regex is not None:
        if not isinstance(regex, str):
            raise ConfigurationError(f"{name}: 'regex' must be a string")
        parts.append(f"(?:{regex})")
    tap_ids = frozenset(_strings(name, "taps", taps)) if taps is not None else frozenset()
    reactions: frozenset[str] = frozenset()
    if reaction is not None:
        if not isinstance(reaction, list) or not all(isinstance(e, str) and emoji_key(e) for e in reaction):
            raise ConfigurationError(f"{name}: 'reaction' must be a list of emojis")
        reactions = frozenset(emoji_key(e) for e in reaction)
    if not parts and not tap_ids and not reactions:
        raise ConfigurationError(f"{name}: give 'keywords', 'regex', 'taps', 'reaction' or several")
    try:
        pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
    except re.error as exc:
        raise ConfigurationError(f"{name}: bad regex: {exc}") from exc
    interactive = _interactive(name, answer, raw.get("buttons"), raw.get("list"))
    file = raw.get("file")
    if file is not None and (not isinstance(file, str) or not file or Path(file).name != file):
        raise ConfigurationError(f"{name}: 'file' must be the name of a file in WAYPOST_AI_FILES_DIR")
    if file is not None and interactive is not None:
        raise ConfigurationError(f"{name}: give 'file' or 'buttons'/'list', not both")
    return Rule(name, pattern, answer, tap_ids, interactive, reactions, file)


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

    def match(self, request: ReplyRequest) -> Rule | None:
        """A rule naming the tapped choice's id first; else the first whose text pattern matches
        (a tap's text is its title)."""
        if request.tap_id is not None:
            tapped = next((rule for rule in self.rules if request.tap_id in rule.taps), None)
            if tapped is not None:
                return tapped
        return next((rule for rule in self.rules if rule.matches(request.message)), None)

    def needs_knowledge(self, request: ReplyRequest) -> bool:
        """Only a turn no rule matches is answered from the knowledge base (grounding skips the search
        for the others: one query fewer per reply)."""
        return self.match(request) is None

    async def reply(self, request: ReplyRequest) -> Answer | Handover | None:
        rule = self.match(request)
        if rule is None:
            pair = next((hit for hit in request.knowledge if hit.source_kind == "qa"), None)
            if pair is not None:
                return Answer(pair.text)
            if request.strict:
                return Handover(NO_PASSAGE)
        template = rule.answer if rule else self.fallback
        if template is None:
            return None
        text = template.replace("{contact_name}", request.contact_name or "there")
        text = text.replace("{message}", request.message.text)
        if rule is not None and rule.file is not None:
            return ai_files.answer(rule.file, text)
        if rule is None or rule.interactive is None:
            return Answer(text)
        # The body was checked with the template; a long name cannot push it past Meta's limit.
        payload = {**rule.interactive, "body": {"text": text[: kinds.CAPTION_MAX].strip()}}
        return Answer(kinds.summary("interactive", payload, None), kind="interactive", payload=payload)

    async def aclose(self) -> None:
        return None
