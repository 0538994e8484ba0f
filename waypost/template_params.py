"""What a stored message template asks for when it is sent, read from its `components` as Meta lists
them (docs/whatsapp.md "Message templates: sending one with parameters"): the {{n}} or {{name}}
placeholders of a TEXT header and of the body, the URL buttons whose link ends in a placeholder (one
suffix each, sent with the button's index), and what Waypost cannot fill yet (a media header, a
coupon-code button...). Shared by the inbox's picker and send (webhook/inbox/templates.py) and the fake
Graph API, which refuses a send whose counts do not match like Meta does (error 132000).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_PARAM = re.compile(r"{{\s*([A-Za-z0-9_]+)\s*}}")
# Meta's per-parameter limits (docs/whatsapp.md): a header parameter 60 characters (the whole TEXT
# header is 60), a body parameter 1024 (32768 only when the body is the template's one component:
# the lower limit is enforced always), a URL button's whole link 2000.
HEADER_PARAM_MAX = 60
BODY_PARAM_MAX = 1024
URL_MAX = 2000
# Meta refuses a parameter with a line break or a tab, or more than 4 consecutive spaces.
_UNSENDABLE = re.compile(r"[\n\r\t]| {5,}")
# Buttons whose send needs a parameter Waypost does not build (a coupon code, a catalog product...)
_UNSUPPORTED_BUTTONS = {"COPY_CODE", "OTP", "CATALOG", "MPM", "SPM"}
_UNSUPPORTED_COMPONENTS = {"CAROUSEL", "LIMITED_TIME_OFFER"}


@dataclasses.dataclass
class Button:
    index: int  # its position in the template's buttons: the `index` a send names
    kind: str  # QUICK_REPLY, URL, PHONE_NUMBER...
    text: str
    url: str | None
    params: list[str]  # the placeholder of a dynamic URL (one at most)


@dataclasses.dataclass
class Shape:
    header_format: str | None  # TEXT, IMAGE, VIDEO, DOCUMENT, LOCATION; None without a header
    header_text: str | None
    header_params: list[str]
    body_text: str
    body_params: list[str]
    footer: str | None
    buttons: list[Button]
    unsupported: str | None  # why Waypost cannot send it, or None

    @property
    def named(self) -> bool:
        """Whether the template uses named parameters ({{first_name}}): each is sent with parameter_name."""
        return any(not key.isdigit() for key in self.header_params + self.body_params)

    @property
    def url_buttons(self) -> list[Button]:
        return [button for button in self.buttons if button.params]


def placeholders(text: Any) -> list[str]:
    """The distinct placeholders of a text: {{1}}, {{2}}... in number order, named ones as they appear."""
    if not isinstance(text, str):
        return []
    keys = list(dict.fromkeys(_PARAM.findall(text)))
    return sorted(keys, key=int) if keys and all(key.isdigit() for key in keys) else keys


def segments(text: str | None) -> list[tuple[str, str | None]]:
    """`text` cut into literal parts (key None) and placeholders (the key), for a preview to fill."""
    parts: list[tuple[str, str | None]] = []
    at = 0
    for match in _PARAM.finditer(text or ""):
        if match.start() > at:
            parts.append((text[at : match.start()], None))  # type: ignore[index]
        parts.append((match.group(0), match.group(1)))
        at = match.end()
    if text and at < len(text):
        parts.append((text[at:], None))
    return parts


def fill(text: str | None, values: dict[str, str]) -> str:
    """`text` with each placeholder replaced by its value (left as it is without one)."""
    return _PARAM.sub(lambda m: values.get(m.group(1), m.group(0)), text or "")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def shape(components: Any) -> Shape:
    """The parts of a template that a send fills, from its stored `components`."""
    found = Shape(None, None, [], "", [], None, [], None)
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            continue
        kind = _str(component.get("type")).upper()
        if kind == "HEADER":
            found.header_format = _str(component.get("format")).upper() or "TEXT"
            if found.header_format == "TEXT":
                found.header_text = _str(component.get("text"))
                found.header_params = placeholders(found.header_text)
            else:
                found.unsupported = f"its {found.header_format.lower()} header needs a file Waypost does not send yet"
        elif kind == "BODY":
            found.body_text = _str(component.get("text"))
            found.body_params = placeholders(found.body_text)
        elif kind == "FOOTER":
            found.footer = _str(component.get("text")) or None
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                if not isinstance(button, dict):
                    continue
                kind = _str(button.get("type")).upper()
                url = _str(button.get("url")) or None
                params = placeholders(url) if kind == "URL" else []
                found.buttons.append(Button(index, kind, _str(button.get("text")), url, params))
                if kind in _UNSUPPORTED_BUTTONS:
                    found.unsupported = (
                        f"its {kind.lower().replace('_', ' ')} button needs a value Waypost does not send yet"
                    )
        elif kind in _UNSUPPORTED_COMPONENTS:
            found.unsupported = f"its {kind.lower().replace('_', ' ')} is not sent by Waypost yet"
    return found


def value_problem(value: str, limit: int) -> str | None:
    """Why Meta would refuse this parameter value, or None."""
    if not value.strip():
        return "is empty"
    if _UNSENDABLE.search(value):
        return "has a line break, a tab or more than 4 spaces in a row, which WhatsApp refuses"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    return None


def _parameter(text: str, name: str | None) -> dict[str, Any]:
    parameter = {"type": "text", "text": text}
    if name is not None:
        parameter["parameter_name"] = name
    return parameter


def graph_template(
    name: str,
    language: str,
    *,
    header: dict[str, str] | None = None,
    body: dict[str, str] | None = None,
    buttons: dict[int, str] | None = None,
    named: bool = False,
) -> dict[str, Any]:
    """The Graph API's `template` object (docs/whatsapp.md "Message templates"): header, body (each
    {placeholder: value}, sent with `parameter_name` when `named`), then one `button` component
    (sub_type url, its index as a string) per dynamic URL button. The one builder: an operator's send
    and the re-engagement template both use it."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    components: list[dict[str, Any]] = []
    for kind, values in (("header", header), ("body", body)):
        if values:
            parameters = [_parameter(v, k if named else None) for k, v in values.items()]
            components.append({"type": kind, "parameters": parameters})
    for index, text in sorted((buttons or {}).items()):
        parameters = [{"type": "text", "text": text}]
        components.append({"type": "button", "sub_type": "url", "index": str(index), "parameters": parameters})
    if components:
        template["components"] = components
    return template
