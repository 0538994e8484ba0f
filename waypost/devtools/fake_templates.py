"""The message-templates side of the fake Graph API, mixed into FakeGraph (waypost/devtools/fake_graph.py).

GET /{version}/{waba-id}/message_templates answers `{"data": [...], "paging": {"cursors": {...},
"next": ...}}` like Meta (docs/whatsapp.md "Message templates"), `limit` templates a page, with a
`next` URL on this server while more remain. Tests set the templates with `set_templates`, or over
HTTP with PUT /_fake/templates {"templates": [...]}.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from waypost.devtools.fake_answers import error_body


def template(
    name: str,
    *,
    language: str = "en_US",
    category: str = "UTILITY",
    status: str = "APPROVED",
    body: str = "Hello {{1}}, your order {{2}} is ready.",
    template_id: str | None = None,
) -> dict[str, Any]:
    """One template as Meta lists it."""
    return {
        "id": template_id or str(abs(hash((name, language))) % 10**15),
        "name": name,
        "language": language,
        "category": category,
        "status": status,
        "components": [{"type": "BODY", "text": body}],
    }


class FakeTemplatesMixin:
    access_token: str

    def _init_templates(self) -> None:
        self.templates: list[dict[str, Any]] = []
        self.template_requests: list[str] = []  # the URL of every list request, for tests
        self.templates_next: str | None = None  # a `paging.next` to answer instead of this server's own

    def set_templates(self, templates: list[dict[str, Any]]) -> None:
        self.templates = list(templates)

    async def templates_endpoint(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.set_templates(list(body["templates"]))
        return JSONResponse({"ok": True, "templates": len(self.templates)})

    async def list_templates(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(error_body(190, "Invalid OAuth access token."), status_code=401)
        self.template_requests.append(str(request.url))
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
