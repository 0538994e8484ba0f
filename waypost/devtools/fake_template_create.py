"""Creating message templates on the fake Graph API, mixed into FakeGraph (waypost/devtools/fake_graph.py)
next to the listing (fake_templates.py).

POST /{version}/{waba-id}/message_templates checks a template as Meta does, on its own (it shares no
code with Waypost's checks, so that a gap in those shows): the name's characters and length, the
category and language, one BODY of at most 1,024 characters whose {{n}} each have an example, a
text HEADER, a FOOTER, the buttons' limits, and that no template of that name and language exists
(code 100, subcode 2388024). Also two review rules third parties report from Meta (subcodes 2388299,
a body that starts or ends with a parameter, and 2388293, too many parameters for its length; the
fake's ratio is its own guess). A new template answers {id, status: PENDING, category} and is
listed by GET from then on. `template_create_script` (Behaviour, as for sends) makes it fail, hang,
or take the template but lose the answer; `template_creates` records every request.
docs/whatsapp.md "Creating templates".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections import deque
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from waypost.devtools.fake_answers import Behaviour, error_body

_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2,4})?$")
_PARAM = re.compile(r"{{\s*(\d+)\s*}}")
EXISTS = 2388024
MISSING_EXAMPLE = 2388043
DANGLING_PARAMETER = 2388299
PARAMETER_RATIO = 2388293
Refusal = tuple[int | None, str, str]  # subcode, Meta's user title, Meta's user message


def meta_refusal(subcode: int | None, title: str, message: str) -> dict[str, Any]:
    """Meta's error body for a refused template (code 100, with its subcode)."""
    error: dict[str, Any] = {
        "message": "Invalid parameter",
        "type": "OAuthException",
        "code": 100,
        "is_transient": False,
        "error_user_title": title,
        "error_user_msg": message,
        "fbtrace_id": "AFakeTraceId",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def _body_refusal(body: dict[str, Any]) -> Refusal | None:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return None, "Body is required", "The body component needs its text."
    if len(text) > 1024:
        return None, "Body too long", "The body can have at most 1024 characters."
    params = _PARAM.findall(text)
    if not params:
        return None
    example = body.get("example")
    rows = example.get("body_text") if isinstance(example, dict) else None
    first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], list) else None
    if first is None or len(first) != len(set(params)) or not all(isinstance(v, str) and v for v in first):
        return MISSING_EXAMPLE, "Examples required", "Add an example value for each variable in the body."
    stripped = text.strip().strip(".,;:!?()\"'")
    if _PARAM.match(stripped) or re.search(r"{{\s*\d+\s*}}$", stripped):
        return (
            DANGLING_PARAMETER,
            "Variables can't be at the start or end",
            ("Variables can't be at the start or end of the template."),
        )
    words = len(_PARAM.sub(" ", text).split())
    if words < 2 * len(params):
        return (
            PARAMETER_RATIO,
            "Too many variables for the length",
            ("This template contains too many variable parameters relative to the message length."),
        )
    return None


def _header_refusal(header: dict[str, Any]) -> Refusal | None:
    if str(header.get("format", "")).upper() != "TEXT":
        return None, "Header format", "This fake takes text headers only."
    text = header.get("text")
    if not isinstance(text, str) or not text or len(text) > 60:
        return None, "Header too long", "A text header has 1 to 60 characters."
    params = _PARAM.findall(text)
    if len(params) > 1:
        return None, "Too many variables", "A text header takes one variable."
    example = header.get("example")
    values = example.get("header_text") if isinstance(example, dict) else None
    if params and not (isinstance(values, list) and len(values) == 1):
        return MISSING_EXAMPLE, "Examples required", "Add an example value for the header's variable."
    return None


def _buttons_refusal(buttons: Any) -> Refusal | None:
    if not isinstance(buttons, list) or not buttons or len(buttons) > 10:
        return None, "Buttons", "A buttons component has 1 to 10 buttons."
    kinds = [b.get("type") if isinstance(b, dict) else None for b in buttons]
    if kinds.count("URL") > 2 or kinds.count("PHONE_NUMBER") > 1:
        return None, "Too many buttons", "At most 2 URL buttons and 1 phone number button."
    quick = [kind == "QUICK_REPLY" for kind in kinds]
    if sum(1 for a, b in itertools.pairwise(quick) if a != b) > 1:
        return None, "Invalid button combination", "Quick reply buttons must be grouped together."
    for button in buttons:
        text = button.get("text") if isinstance(button, dict) else None
        if not isinstance(text, str) or not text or len(text) > 25:
            return None, "Button text", "A button's text has 1 to 25 characters."
        if button["type"] == "URL" and _PARAM.search(str(button.get("url", ""))) and not button.get("example"):
            return MISSING_EXAMPLE, "Examples required", "Add an example value for the URL's variable."
    return None


def create_refusal(body: Any, templates: list[dict[str, Any]]) -> Refusal | None:
    """Why Meta would refuse to create this template, or None."""
    if not isinstance(body, dict):
        return None, "Invalid request", "The body must be a JSON object."
    name, language = body.get("name"), body.get("language")
    if not isinstance(name, str) or not _NAME.match(name):
        return None, "Invalid name", "Names have lowercase letters, digits and underscores only (max 512)."
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        return None, "Invalid language", "The language is not supported."
    if body.get("category") not in ("MARKETING", "UTILITY", "AUTHENTICATION"):
        return None, "Invalid category", "The category must be MARKETING, UTILITY or AUTHENTICATION."
    components = body.get("components")
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        return None, "Invalid components", "components must be a list of objects."
    by_type: dict[str, list[dict[str, Any]]] = {}
    for component in components:
        by_type.setdefault(str(component.get("type", "")).upper(), []).append(component)
    if len(by_type.get("BODY", [])) != 1 or any(len(v) > 1 for v in by_type.values()):
        return None, "Invalid components", "A template has one body and at most one of each other component."
    if set(by_type) - {"HEADER", "BODY", "FOOTER", "BUTTONS"}:
        return None, "Invalid components", "Unknown component type."
    refusal = _body_refusal(by_type["BODY"][0])
    if refusal is None and "HEADER" in by_type:
        refusal = _header_refusal(by_type["HEADER"][0])
    if refusal is None and "FOOTER" in by_type:
        footer = by_type["FOOTER"][0].get("text")
        if not isinstance(footer, str) or not footer or len(footer) > 60 or _PARAM.search(footer):
            refusal = None, "Footer format incorrect", "A footer has 1 to 60 characters and no variables."
    if refusal is None and "BUTTONS" in by_type:
        refusal = _buttons_refusal(by_type["BUTTONS"][0].get("buttons"))
    if refusal is None and any(
        t.get("name") == name and t.get("language") == language and t.get("status") != "DELETED" for t in templates
    ):
        refusal = (
            EXISTS,
            "Content in This Language Already Exists",
            (f"There is already {language} content for this template. You can create a new template and try again."),
        )
    return refusal


class FakeTemplateCreateMixin:
    access_token: str
    templates: list[dict[str, Any]]

    def _init_template_create(self) -> None:
        self.template_creates: list[dict[str, Any]] = []  # {"body", "status", "created"} per request
        self.template_create_script: deque[Behaviour] = deque()

    def created_templates(self) -> list[dict[str, Any]]:
        return [r for r in self.template_creates if r["created"]]

    async def create_template(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(error_body(190, "Invalid OAuth access token."), status_code=401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(error_body(100, "The request body is not JSON"), status_code=400)
        refusal = create_refusal(body, self.templates)
        if refusal is not None:
            self.template_creates.append({"at": time.time(), "body": body, "status": 400, "created": False})
            return JSONResponse(meta_refusal(*refusal), status_code=400)
        behaviour = self.template_create_script.popleft() if self.template_create_script else Behaviour()
        created = behaviour.status == 200 if behaviour.accept is None else behaviour.accept
        record = {"at": time.time(), "body": body, "status": behaviour.status, "created": created}
        self.template_creates.append(record)
        template_id = str(uuid.uuid4().int % 10**15)
        if created:
            self.templates.append(
                {
                    "id": template_id,
                    "name": body["name"],
                    "language": body["language"],
                    "category": body["category"],
                    "status": "PENDING",
                    "components": body.get("components", []),
                }
            )
        if behaviour.hang:
            await asyncio.sleep(behaviour.hang)
        if behaviour.status != 200:
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else None
            return JSONResponse(error_body(behaviour.code or 1), status_code=behaviour.status, headers=headers)
        return JSONResponse({"id": template_id, "status": "PENDING", "category": body["category"]})
