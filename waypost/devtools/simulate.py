"""`waypost simulate "text"`: post a signed webhook to Waypost as WhatsApp would, print the reply once sent.

Besides a text (`--kind text`, the default): a photo, a voice note or a document (`--kind image|voice|
document`; the text is the caption, the file a small sample or `--file`, served by `waypost dev`'s fake
Graph API), the contact editing or deleting their latest message (`--kind edit|revoke`, or `--target
WAMID`), and a message the business sends from the WhatsApp Business app (`--kind echo`)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from waypost.db import fetch_optional
from waypost.devtools import payloads
from waypost.settings import ConfigurationError, Settings
from waypost.signing import sign

DEV_PHONE_NUMBER_ID = "100000000000001"
DEV_DISPLAY_NUMBER = "15550000001"
KINDS = ("text", "image", "voice", "document", "edit", "revoke", "echo")
# Sample files (message type, MIME type, bytes, file name): a 1x1 PNG, an Ogg page header, a tiny PDF.
SAMPLES: dict[str, tuple[str, str, bytes, str | None]] = {
    "image": (
        "image",
        "image/png",
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
        ),
        None,
    ),
    "voice": ("audio", "audio/ogg", b"OggS\x00\x02" + bytes(58), None),
    "document": ("document", "application/pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", "sample.pdf"),
}


def inbound_payload(text: str, wa_id: str, name: str, wamid: str) -> dict[str, Any]:
    return _inbound(payloads.text_message(text, wa_id=wa_id, wamid=wamid), wa_id, name)


def _inbound(message: dict[str, Any], wa_id: str, name: str) -> dict[str, Any]:
    return payloads.inbound(
        message,
        waba_id="simulated-waba",
        phone_number_id=DEV_PHONE_NUMBER_ID,
        display_phone_number=DEV_DISPLAY_NUMBER,
        contacts=[{"profile": {"name": name}, "wa_id": wa_id}],
    )


async def _media_message(
    settings: Settings, kind: str, caption: str, wa_id: str, wamid: str, file: Path | None
) -> dict[str, Any]:
    """Give the fake Graph API the file, then the webhook that names it."""
    message_type, mime_type, data, filename = SAMPLES[kind]
    if file is not None:
        data, filename = await asyncio.to_thread(file.read_bytes), file.name
    media_id = f"simulated-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(timeout=10) as client:
        served = await client.put(
            f"{settings.whatsapp_api_base}/_fake/media/{media_id}", content=data, headers={"Content-Type": mime_type}
        )
    if served.status_code != 200:
        raise ConfigurationError(
            f"the fake Graph API at {settings.whatsapp_api_base} did not take the file ({served.status_code}): "
            "simulated media needs `waypost dev`"
        )
    return payloads.media_message(
        message_type,
        media_id,
        mime_type=mime_type,
        sha256=hashlib.sha256(data).hexdigest(),
        caption=caption or None,
        filename=filename,
        voice=True if kind == "voice" else None,
        wa_id=wa_id,
        wamid=wamid,
    )


async def _webhook(
    settings: Settings,
    kind: str,
    text: str,
    *,
    wa_id: str,
    name: str,
    wamid: str,
    target: str | None,
    file: Path | None,
) -> dict[str, Any]:
    if kind in SAMPLES:
        return _inbound(await _media_message(settings, kind, text, wa_id, wamid, file), wa_id, name)
    if kind == "echo":
        echo = payloads.echo_message(text, to=wa_id, wamid=wamid, business_number=DEV_DISPLAY_NUMBER)
        return payloads.echoes(
            echo, waba_id="simulated-waba", phone_number_id=DEV_PHONE_NUMBER_ID, display_phone_number=DEV_DISPLAY_NUMBER
        )
    if kind in ("edit", "revoke"):
        target = target or await _latest_inbound(settings, wa_id)
        if kind == "edit":
            return _inbound(payloads.edit_message(target, text, wa_id=wa_id, wamid=wamid), wa_id, name)
        return _inbound(payloads.revoke_message(target, wa_id=wa_id, wamid=wamid), wa_id, name)
    return inbound_payload(text, wa_id, name, wamid)


async def _latest_inbound(settings: Settings, wa_id: str) -> str:
    async with await psycopg.AsyncConnection.connect(
        settings.require_database_url(), autocommit=True, row_factory=dict_row
    ) as conn:
        row = await fetch_optional(conn, "devtools_latest_inbound", wa_id=wa_id)
    if row is None:
        raise ConfigurationError(f"no message from {wa_id} to change: simulate one first, or name it with --target")
    return str(row["wa_message_id"])


async def simulate(
    settings: Settings,
    text: str,
    *,
    wa_id: str,
    name: str,
    url: str | None,
    wait_seconds: float,
    kind: str = "text",
    target: str | None = None,
    file: Path | None = None,
) -> tuple[bool, str]:
    """Returns (replied, what to print). An edit, a revoke or an echo expects no reply: True once stored."""
    if settings.whatsapp_app_secret is None:
        raise ConfigurationError("WHATSAPP_APP_SECRET is not set: cannot sign the simulated webhook")
    wamid = f"wamid.SIM{uuid.uuid4().hex}"
    document = await _webhook(settings, kind, text, wa_id=wa_id, name=name, wamid=wamid, target=target, file=file)
    body = payloads.dumps(document)
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
    arrow = "⇢ from the phone app to" if kind == "echo" else "→"
    lines = [
        f"{arrow} {name} ({wa_id}) [{kind}, {wamid}]: {text}",
        f"  webhook 200 in {(time.monotonic() - started) * 1000:.0f} ms, "
        f"request_id {response.headers.get('x-request-id')}",
    ]
    if kind in ("edit", "revoke", "echo"):
        return True, "\n".join([*lines, "  stored: see the conversation in the inbox"])
    return await _wait_for_reply(settings, wamid, lines, started, wait_seconds)


async def _wait_for_reply(
    settings: Settings, wamid: str, lines: list[str], started: float, wait_seconds: float
) -> tuple[bool, str]:
    async with await psycopg.AsyncConnection.connect(
        settings.require_database_url(), autocommit=True, row_factory=dict_row
    ) as conn:
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            row = await fetch_optional(conn, "devtools_simulated_reply", wamid=wamid)
            elapsed = (time.monotonic() - started) * 1000
            if row and row["reply_status"] in ("sent", "delivered", "read"):
                quiet = settings.turn_quiet_seconds  # README "Turns": the reply waits for more messages
                why = f" ({quiet:g} s of it the quiet window, WAYPOST_TURN_QUIET_SECONDS)" if quiet else ""
                return True, "\n".join([*lines, f"← reply after {elapsed:.0f} ms{why}: {row['reply']}"])
            if row and row["job_status"] in ("skipped", "failed"):
                reason = row["skip_reason"] or row["last_error"]
                return False, "\n".join([*lines, f"✗ no reply: job {row['job_status']}: {reason}"])
            await asyncio.sleep(0.05)
    return False, "\n".join([*lines, f"✗ no reply within {wait_seconds:.0f} s (is a worker running?)"])
