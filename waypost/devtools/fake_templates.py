"""The message-templates side of the fake Graph API, mixed into FakeGraph (waypost/devtools/fake_graph.py).

GET /{version}/{waba-id}/message_templates answers `{"data": [...], "paging": {"cursors": {...},
"next": ...}}` like Meta (docs/whatsapp.md "Message templates"), `limit` templates a page, with a
`next` URL on this server while more remain. Tests set the templates with `set_templates`, or over
HTTP with PUT /_fake/templates {"templates": [...]}. A template send whose parameter counts do not
match a listed template is refused with Meta's error 132000 (FakeGraph.send).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from waypost.devtools.fake_answers import error_body
from waypost.template_params import Shape, shape


def template(
    name: str,
    *,
    language: str = "en_US",
    category: str = "UTILITY",
    status: str = "APPROVED",
    body: str = "Hello {{1}}, your order {{2}} is ready.",
    template_id: str | None = None,
    header: str | None = None,
    footer: str | None = None,
    buttons: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One template as Meta lists it: a TEXT `header`, a `footer` and `buttons` ({"type": "URL",
    "text", "url"}, {"type": "QUICK_REPLY", "text"}) when given."""
    components: list[dict[str, Any]] = [{"type": "HEADER", "format": "TEXT", "text": header}] if header else []
    components.append({"type": "BODY", "text": body})
    if footer:
        components.append({"type": "FOOTER", "text": footer})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    return {
        "id": template_id or str(abs(hash((name, language))) % 10**15),
        "name": name,
        "language": language,
        "category": category,
        "status": status,
        "components": components,
    }


class FakeTemplatesMixin:
    access_token: str

    def _init_templates(self) -> None:
        self.templates: list[dict[str, Any]] = []
        self.template_requests: list[str] = []  # the URL of every list request, for tests
        self.templates_next: str | None = None  # a `paging.next` to answer instead of this server's own
        # set: list requests wait until it is set again (a test holds a sync in flight)
        self.templates_hold: threading.Event | None = None

    def set_templates(self, templates: list[dict[str, Any]]) -> None:
        self.templates = list(templates)

    def set_template_status(self, name: str, status: str, language: str = "en_US") -> None:
        """Meta changed a listed template's status (paused it, disabled it): later sends see it."""
        for listed in self.templates:
            if (listed["name"], listed["language"]) == (name, language):
                listed["status"] = status
                return
        raise KeyError(f"no template {name}/{language} is listed")

    def template_refusal(self, content: dict[str, Any]) -> tuple[int, str] | None:
        """How Meta refuses a send of a template it lists but cannot send (docs/whatsapp.md "Message
        templates", errors): paused, disabled, not approved or unknown; the error code and its title.
        Nothing is checked while no template is listed."""
        if not self.templates:
            return None
        language = content["language"]["code"]
        listed = next((t for t in self.templates if (t["name"], t["language"]) == (content["name"], language)), None)
        if listed is None or listed.get("status") != "APPROVED":
            status = None if listed is None else listed.get("status")
            return TEMPLATE_REFUSALS.get(status or "", (132001, "Template name does not exist in the translation"))
        return None  # the parameters are checked next (template_mismatch: 132000 with Meta's details)

    async def templates_endpoint(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.set_templates(list(body["templates"]))
        return JSONResponse({"ok": True, "templates": len(self.templates)})

    def template_mismatch(self, body: dict[str, Any]) -> str | None:
        """Meta's error 132000 details when a template send's parameter counts (header, body, URL
        buttons) do not match the template it names, if this fake lists that template."""
        content = body.get("template") if body.get("type") == "template" else None
        if not isinstance(content, dict):
            return None
        language = (content.get("language") or {}).get("code")
        for listed in self.templates:
            if (listed.get("name"), listed.get("language")) == (content.get("name"), language):
                return count_mismatch(shape(listed.get("components")), content)
        return None

    async def list_templates(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(error_body(190, "Invalid OAuth access token."), status_code=401)
        self.template_requests.append(str(request.url))
        if self.templates_hold is not None:
            await asyncio.to_thread(self.templates_hold.wait, 30)
        try:
            limit = max(1, min(int(request.query_params.get("limit", "25")), 1000))
            start = int(request.query_params.get("after", "0"))
        except ValueError:
            return JSONResponse(error_body(100, "Invalid parameter"), status_code=400)
        name = request.query_params.get("name")  # the templates of one name (all its languages)
        listed = [t for t in self.templates if t.get("name") == name] if name else self.templates
        page = listed[start : start + limit]
        answer: dict[str, Any] = {"data": page}
        if page:
            answer["paging"] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
            if self.templates_next is not None:
                answer["paging"]["next"] = self.templates_next
            elif start + len(page) < len(listed):
                query = request.url.include_query_params(after=str(start + len(page)))
                answer["paging"]["next"] = str(query)
        return JSONResponse(answer)


# Meta sends an APPROVED template only; a paused or disabled one is refused with its own code, any
# other (pending, rejected, unknown) as not existing in that language.
TEMPLATE_REFUSALS = {"PAUSED": (132015, "Template is Paused"), "DISABLED": (132016, "Template is Disabled")}


def template_problem(content: Any) -> str | None:
    """What Meta would refuse in a send's `template` object (name, language.code, components[])."""
    if not isinstance(content, dict) or not isinstance(content.get("name"), str) or not content["name"]:
        return "template.name is required"
    language = content.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        return "template.language.code is required"
    components = content.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) and c.get("type") for c in components):
        return "template.components must be a list of objects with a type"
    return None


def sent_counts(template: Any) -> dict[str, Any]:
    """How many text parameters a send's `template` object gives the header and the body, and the
    indexes of the URL buttons it fills (for the fake Graph API's check)."""
    counts: dict[str, Any] = {"header": 0, "body": 0, "buttons": []}
    for component in (template or {}).get("components") or []:
        if not isinstance(component, dict):
            continue
        kind, parameters = str(component.get("type") or "").lower(), component.get("parameters") or []
        if kind in ("header", "body"):
            counts[kind] += len(parameters)
        elif kind == "button" and str(component.get("sub_type") or "").lower() == "url":
            counts["buttons"].append(str(component.get("index")))
    return counts


def count_mismatch(stored: Shape, template: Any) -> str | None:
    """What Meta's error 132000 would say of this send against the stored template, or None."""
    given = sent_counts(template)
    for part, expected in (("header", len(stored.header_params)), ("body", len(stored.body_params))):
        if given[part] != expected:
            return (
                f"{part}: number of localizable_params ({given[part]}) does not match the expected number "
                f"of params ({expected})"
            )
    dynamic = sorted(str(button.index) for button in stored.url_buttons)
    if sorted(given["buttons"]) != dynamic:
        return (
            f"buttons: number of localizable_params ({len(given['buttons'])}) does not match the expected "
            f"number of params ({len(dynamic)})"
        )
    return None
