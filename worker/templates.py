"""Message templates: `waypost templates sync` reads the WhatsApp Business Account's templates from
the Graph API (GET /{waba-id}/message_templates, every page) into `message_templates`.

All pages are read before anything is written, so a sync that fails halfway changes nothing (and
never takes the templates it did not reach for deleted). `paging.next` is followed only to the
Graph API's own host: the access token goes nowhere else. docs/whatsapp.md "Message templates".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from typing import Any

import httpx
from psycopg.types.json import Jsonb

from waypost.db import DictConnection, execute, fetch_all
from waypost.errors import TemplateSyncFailed
from waypost.settings import ConfigurationError, Settings
from waypost.template_notices import note_sync_changes
from waypost.template_params import shape
from waypost.text import clean_text

logger = logging.getLogger(__name__)

FIELDS = "id,name,language,category,status,components,quality_score,rejected_reason"
PAGE_SIZE = 100
MAX_PAGES = 500  # 50,000 templates: far beyond Meta's per-account limit, a guard against a paging loop


@dataclasses.dataclass
class SyncResult:
    listed: int
    pages: int
    deleted: list[str]


def parameter_counts(components: list[Any]) -> dict[str, int]:
    """How many parameters the body, the (text) header and the URL buttons need, read by the same
    parser the inbox's send checks them with (waypost.template_params.shape)."""
    form = shape(components)
    return {
        "body_params": len(form.body_params),
        "header_params": len(form.header_params),
        "button_params": sum(len(button.params) for button in form.url_buttons),
    }


def _text(value: Any, limit: int = 512) -> str | None:
    return clean_text(str(value))[:limit] if value not in (None, "") else None


def template_row(waba_id: str, item: dict[str, Any]) -> dict[str, Any] | None:
    """One element of Meta's `data[]` as the row's values, or None without a name and language."""
    name, language = _text(item.get("name")), _text(item.get("language"), 32)
    if not name or not language:
        return None
    raw = item.get("components")
    components: list[Any] = raw if isinstance(raw, list) else []
    quality = item.get("quality_score")
    score = quality.get("score") if isinstance(quality, dict) else quality
    reason = _text(item.get("rejected_reason"))
    return {
        "template_id": _text(item.get("id"), 64),
        "waba_id": waba_id,
        "name": name,
        "language": language,
        "category": _text(item.get("category"), 64),
        "status": _text(item.get("status"), 64) or "UNKNOWN",
        "components": Jsonb(components),
        **parameter_counts(components),
        "quality": _text(score, 64),
        "rejected_reason": None if reason == "NONE" else reason,
    }


def _same_host(url: str, base: str) -> bool:
    target, origin = httpx.URL(url), httpx.URL(base)
    return (target.scheme, target.host, target.port) == (origin.scheme, origin.host, origin.port)


async def read_templates(settings: Settings, client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], int]:
    """Every template of the account, following `paging.next`; raises TemplateSyncFailed."""
    waba_id = settings.whatsapp_business_account_id
    base = settings.whatsapp_api_base.rstrip("/")
    url: str | None = f"{base}/{settings.whatsapp_api_version}/{waba_id}/message_templates"
    params: dict[str, Any] | None = {"fields": FIELDS, "limit": PAGE_SIZE}
    items: list[dict[str, Any]] = []
    pages = 0
    while url is not None:
        if pages >= MAX_PAGES:
            raise TemplateSyncFailed(f"more than {MAX_PAGES} pages of templates: stopped")
        if not _same_host(url, base):
            raise TemplateSyncFailed(f"paging.next points off the Graph API host ({httpx.URL(url).host}): not followed")
        try:
            response = await client.get(url, params=params)
        except httpx.TransportError as exc:
            raise TemplateSyncFailed(f"template list: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise TemplateSyncFailed(f"template list: HTTP {response.status_code}: {clean_text(response.text)[:300]}")
        try:
            page = response.json()
            data, paging = page.get("data", []), page.get("paging") or {}
        except (ValueError, AttributeError) as exc:
            raise TemplateSyncFailed(f"template list: not a JSON object (HTTP {response.status_code})") from exc
        if not isinstance(data, list):
            raise TemplateSyncFailed("template list: `data` is not a list")
        items.extend(item for item in data if isinstance(item, dict))
        pages += 1
        url = paging.get("next") if isinstance(paging, dict) and data else None
        params = None  # `next` carries the query, the cursor included
    return items, pages


async def sync(conn: DictConnection, settings: Settings, client: httpx.AsyncClient | None = None) -> SyncResult:
    """Read every template and store them in one transaction; templates the account no longer lists
    become DELETED. Raises ConfigurationError without the account id or token, TemplateSyncFailed."""
    waba_id = settings.whatsapp_business_account_id
    if not waba_id:
        raise ConfigurationError("WHATSAPP_BUSINESS_ACCOUNT_ID is not set: no account to read templates from")
    settings.check_sending()
    assert settings.whatsapp_access_token is not None
    own = client is None
    if client is None:
        token = settings.whatsapp_access_token.get_secret_value()
        timeout = httpx.Timeout(settings.send_read_timeout, connect=settings.send_connect_timeout)
        client = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    read_at = dt.datetime.now(dt.UTC)  # what the list says counts from here (sql/templates.sql)
    try:
        items, pages = await read_templates(settings, client)
    finally:
        if own:
            await client.aclose()
    rows = [row for row in (template_row(waba_id, item) for item in items) if row is not None]
    async with conn.transaction():
        before = await fetch_all(conn, "templates_lock_account", waba_id=waba_id, read_at=read_at)
        for row in rows:
            await execute(conn, "template_upsert", **row, read_at=read_at)
        listed = [f"{row['name']}/{row['language']}" for row in rows]
        gone = await fetch_all(conn, "templates_mark_deleted", waba_id=waba_id, listed=listed, read_at=read_at)
        await execute(conn, "template_sync_done", waba_id=waba_id)  # the sweep's schedule counts from here
        changed = await note_sync_changes(conn, waba_id, before, rows)  # what a missed webhook would have told
    deleted = [f"{row['name']}/{row['language']}" for row in gone]
    logger.info(
        "templates sync: %d listed on %d page(s), %d deleted, %d change(s) notified",
        len(rows),
        pages,
        len(deleted),
        changed,
    )
    return SyncResult(listed=len(rows), pages=pages, deleted=deleted)


async def list_templates(conn: DictConnection) -> list[dict[str, Any]]:
    return [dict(row) for row in await fetch_all(conn, "templates_list")]


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{row['name']}  {row['language']}  {row['category'] or '-'}  {row['status']}  body params {row['body_params']}"
        for row in rows
    ]
    return "\n".join(lines) if lines else "No templates"


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=str, ensure_ascii=False, indent=2)
