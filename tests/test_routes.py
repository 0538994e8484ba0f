"""Routes keep their paths under their names, and grouping them with Mount changed no answer at the
edges of the groups (a trailing slash, a bare prefix). The app runs in-process without its lifespan:
no database, no server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from starlette.applications import Starlette

from waypost.settings import load_settings
from webhook.app import create_app
from webhook.state import AppState


class SchemaOk:
    """A schema guard whose last check found the schema matching."""

    ok = True

    async def current(self) -> SchemaOk:
        return self


def app_without_lifespan() -> Starlette:
    settings = load_settings(database_url="postgresql://unused@localhost/unused", session_secret="s" * 32)
    app = create_app(settings)
    # these requests stop before any query: the pool is never used
    app.state.waypost = AppState(
        settings=settings,
        pool=cast(Any, None),
        schema=cast(Any, SchemaOk()),
        media_store=cast(Any, None),
        webhooks=cast(Any, None),
    )
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_without_lifespan())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize(
    ("name", "params", "path"),
    [
        ("healthz", {}, "/healthz"),
        ("readyz", {}, "/readyz"),
        ("metrics", {}, "/metrics"),
        ("openapi", {}, "/openapi.json"),
        ("webhook", {}, "/api/webhooks/whatsapp"),
        ("webhook_verify", {}, "/api/webhooks/whatsapp"),
        ("cron", {}, "/api/cron/run-outbound-jobs"),
        ("inbox", {}, "/inbox"),
        ("inbox:login", {}, "/inbox/login"),
        ("inbox:sign_in", {}, "/inbox/login"),
        ("inbox:logout", {}, "/inbox/logout"),
        ("inbox:conversation", {"conversation_id": 7}, "/inbox/conversations/7"),
        ("inbox:notifications", {}, "/inbox/notifications"),
        ("inbox:conversations_fragment", {}, "/inbox/fragments/conversations"),
        ("inbox:conversation_fragment", {"conversation_id": 7}, "/inbox/fragments/conversations/7"),
        ("inbox:notifications_fragment", {}, "/inbox/fragments/notifications"),
        ("inbox:badge_fragment", {}, "/inbox/fragments/badge"),
        ("inbox:events", {}, "/inbox/events"),
        ("inbox:static", {"path": "inbox.js"}, "/inbox/static/inbox.js"),
        ("api:conversations", {}, "/api/inbox/conversations"),
        ("api:conversation", {"conversation_id": 7}, "/api/inbox/conversations/7"),
        ("api:send_message", {"conversation_id": 7}, "/api/inbox/conversations/7/messages"),
        ("api:set_ai", {"conversation_id": 7}, "/api/inbox/conversations/7/ai"),
        ("api:mark_read", {"conversation_id": 7}, "/api/inbox/conversations/7/read"),
        ("api:delete", {"conversation_id": 7}, "/api/inbox/conversations/7/delete"),
        ("api:restore", {"conversation_id": 7}, "/api/inbox/conversations/7/restore"),
        ("api:notifications", {}, "/api/inbox/notifications"),
        ("api:read_notification", {"notification_id": 7}, "/api/inbox/notifications/7/read"),
        ("api:snooze", {"notification_id": 7}, "/api/inbox/notifications/7/snooze"),
    ],
)
def test_named_routes_keep_their_paths(name: str, params: dict[str, object], path: str) -> None:
    assert app_without_lifespan().url_path_for(name, **params) == path


@pytest.mark.parametrize(
    ("method", "path", "status", "location"),
    [
        ("GET", "/inbox", 303, "/inbox/login?next=/inbox"),
        ("GET", "/inbox/", 307, "http://testserver/inbox"),
        ("POST", "/inbox/", 307, "http://testserver/inbox"),
        ("GET", "/inbox/login/", 307, "http://testserver/inbox/login"),
        ("GET", "/inbox/nope", 404, None),
        ("POST", "/inbox", 405, None),
        ("GET", "/healthz/", 307, "http://testserver/healthz"),
        ("GET", "/api", 404, None),
        ("GET", "/api/", 404, None),
        ("GET", "/api/nope", 404, None),
        ("GET", "/api/inbox", 404, None),
        ("GET", "/api/inbox/", 404, None),
        ("GET", "/api/inbox/conversations/", 307, "http://testserver/api/inbox/conversations"),
        ("GET", "/api/webhooks/whatsapp/", 307, "http://testserver/api/webhooks/whatsapp"),
        ("GET", "/api/inbox/notifications/1/read", 405, None),
    ],
)
async def test_group_edges_answer_as_before_the_grouping(
    client: httpx.AsyncClient, method: str, path: str, status: int, location: str | None
) -> None:
    answer = await client.request(method, path)
    assert (answer.status_code, answer.headers.get("location")) == (status, location)


async def test_inbox_api_and_pages_refuse_a_visitor_as_before(client: httpx.AsyncClient) -> None:
    api = await client.get("/api/inbox/conversations")
    assert (api.status_code, api.json()["code"], api.json()["error"]) == (
        401,
        "UNAUTHENTICATED",
        "sign in at /inbox/login first",
    )
    page = await client.get("/inbox/conversations/3?x=1")
    assert (page.status_code, page.headers["location"]) == (303, "/inbox/login?next=/inbox/conversations/3?x=1")


async def test_openapi_describes_the_inbox_api_only(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert all(path.startswith("/api/inbox/") for path in paths)
    # 12, a contact's export and erase, block and unblock, a template send, drafted templates (2)
    assert len(paths) == 19
