"""`waypost simulate "text"`: post a signed inbound message to the webhook, print the reply once sent."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from waypost.db import fetch_optional
from waypost.devtools import payloads
from waypost.settings import ConfigurationError, Settings
from waypost.signing import sign

DEV_PHONE_NUMBER_ID = "100000000000001"


def inbound_payload(text: str, wa_id: str, name: str, wamid: str) -> dict[str, Any]:
    message = payloads.text_message(text, wa_id=wa_id, wamid=wamid)
    return payloads.inbound(
        message,
        waba_id="simulated-waba",
        phone_number_id=DEV_PHONE_NUMBER_ID,
        display_phone_number="15550000001",
        contacts=[{"profile": {"name": name}, "wa_id": wa_id}],
    )


async def simulate(
    settings: Settings, text: str, *, wa_id: str, name: str, url: str | None, wait_seconds: float
) -> tuple[bool, str]:
    """Returns (replied, what to print)."""
    if settings.whatsapp_app_secret is None:
        raise ConfigurationError("WHATSAPP_APP_SECRET is not set: cannot sign the simulated webhook")
    wamid = f"wamid.SIM{uuid.uuid4().hex}"
    body = payloads.dumps(inbound_payload(text, wa_id, name, wamid))
    url = url or f"http://{settings.host}:{settings.port}/api/webhooks/whatsapp"
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(settings.whatsapp_app_secret.get_secret_value(), body),
            },
        )
    if response.status_code != 200:
        return False, f"webhook answered {response.status_code}: {response.text}"
    lines = [
        f"→ {name} ({wa_id}): {text}",
        f"  webhook 200 in {(time.monotonic() - started) * 1000:.0f} ms, "
        f"request_id {response.headers.get('x-request-id')}",
    ]
    async with await psycopg.AsyncConnection.connect(
        settings.require_database_url(), autocommit=True, row_factory=dict_row
    ) as conn:
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            row = await fetch_optional(conn, "devtools_simulated_reply", wamid=wamid)
            elapsed = (time.monotonic() - started) * 1000
            if row and row["reply_status"] in ("sent", "delivered", "read"):
                return True, "\n".join([*lines, f"← reply after {elapsed:.0f} ms: {row['reply']}"])
            if row and row["job_status"] in ("skipped", "failed"):
                reason = row["skip_reason"] or row["last_error"]
                return False, "\n".join([*lines, f"✗ no reply: job {row['job_status']}: {reason}"])
            await asyncio.sleep(0.05)
    return False, "\n".join([*lines, f"✗ no reply within {wait_seconds:.0f} s (is a worker running?)"])
