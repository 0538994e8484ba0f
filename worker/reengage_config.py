"""The re-engagement settings (WAYPOST_REENGAGE_TEMPLATE, WAYPOST_REENGAGE_PARAMETERS), checked when
the worker starts (worker.resources): the template to send when an AI reply falls due after the
24-hour window has closed, and where its body parameters come from. The sending is worker.reengage."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from waypost.settings import ConfigurationError, Settings
from waypost.template_params import BODY_PARAM_MAX, graph_template, shape, value_problem
from waypost.text import clean_text
from worker.rows import Conversation

# Meta's template names: lowercase letters, digits and underscores; languages such as en, en_US, zh_HK
_NAME = re.compile(r"[a-z0-9_]{1,512}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z0-9]{2,8})?")
CONTACT_NAME = "contact_name"
TEXT = "text:"


@dataclasses.dataclass(frozen=True)
class Reengagement:
    """The configured template and where each of its body parameters comes from."""

    name: str
    language: str
    sources: tuple[str, ...]  # `contact_name` or `text:FIXED`, for {{1}}, {{2}}… in order

    @property
    def label(self) -> str:
        return f"{self.name} ({self.language})"

    def parameters(self, conversation: Conversation) -> list[str] | str:
        """The body parameters for this contact, or why they cannot be filled."""
        values = []
        for number, source in enumerate(self.sources, start=1):
            if source == CONTACT_NAME:
                text = clean_text(conversation.contact_name or "").strip()
                if not text:
                    return f"parameter {number} is the contact's name, and the contact has none"
            else:
                text = source.removeprefix(TEXT)
            values.append(text[:BODY_PARAM_MAX])
        return values

    def template_object(self, parameters: list[str], stored: Any = None) -> dict[str, Any] | str:
        """The Graph API's `template` object for these body parameters, built as an operator's send
        builds it (waypost.template_params.graph_template: named parameters go with their names), or
        why the stored template cannot take them. `stored`: the template's stored components, if any
        (without them the parameters go positionally; the queueing function refuses a missing one)."""
        form = shape(stored) if stored is not None else None
        if form is not None and form.unsupported:
            return f"Waypost cannot send it: {form.unsupported}"
        for number, value in enumerate(parameters, start=1):
            if problem := value_problem(value, BODY_PARAM_MAX):
                return f"parameter {number} {problem}"
        keys = form.body_params if form is not None and len(form.body_params) == len(parameters) else None
        named = form is not None and form.named and keys is not None
        body = dict(zip(keys or [str(i) for i in range(1, len(parameters) + 1)], parameters, strict=True))
        return graph_template(self.name, self.language, body=body, named=named)


def reengagement(settings: Settings) -> Reengagement | None:
    """The re-engagement the settings ask for, or None (off). Raises ConfigurationError, when the
    worker starts, for a setting that could never work."""
    configured = settings.reengage_template.strip()
    sources = tuple(source.strip() for source in settings.reengage_parameters if source.strip())
    if not configured:
        if sources:
            raise ConfigurationError(
                "WAYPOST_REENGAGE_PARAMETERS is set but WAYPOST_REENGAGE_TEMPLATE is empty: set the template "
                "(name:language) or clear the parameters"
            )
        return None
    name, colon, language = configured.partition(":")
    if not colon or not _NAME.fullmatch(name) or not _LANGUAGE.fullmatch(language):
        raise ConfigurationError(
            "WAYPOST_REENGAGE_TEMPLATE must be name:language, the name in lowercase letters, digits and "
            f"underscores as in WhatsApp Manager (e.g. follow_up:en_US), not {configured!r}"
        )
    for source in sources:
        if source != CONTACT_NAME and not (source.startswith(TEXT) and clean_text(source[len(TEXT) :]).strip()):
            raise ConfigurationError(
                f"WAYPOST_REENGAGE_PARAMETERS: {source!r} is neither {CONTACT_NAME} nor text:FIXED TEXT "
                "(comma-separated, one per body parameter, in order)"
            )
    fixed = tuple(
        source if source == CONTACT_NAME else TEXT + clean_text(source[len(TEXT) :]).strip() for source in sources
    )
    return Reengagement(name, language, fixed)
