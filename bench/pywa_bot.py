"""The pywa 4.5.0 bot bench/pywa_side.py measures beside Waypost: the bot pywa's docs show, answering each
text message with a quoted reply, served the way `waypost serve` serves Waypost.

    .venv/bin/python -m bench.pywa_bot --port 8090 --graph http://127.0.0.1:8081 [--flavour sync|async]

Needs the `bench` extra (pip install -e '.[bench]'; `python3 bootstrap.py bench` installs it). Signature
validation is on (the benchmarks' app secret), the webhook challenge answers the benchmarks' verify token,
and the replies go to the fake Graph API with the benchmarks' access token. The reply is the text of the
default rules' "opening hours" rule, the same Waypost's `rules` provider answers the driver's question with.
pywa's own built-in server is a Starlette app under uvicorn with background tasks (the 200 goes out, then
the handler runs): this passes it a Starlette app, so uvicorn runs with `waypost serve`'s options and
Waypost's logging setup (no access log lines, WARNING).
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any, cast

import httpx
import uvicorn
from pywa.utils import UserIdentifier
from starlette.applications import Starlette

from bench.common import ACCESS_TOKEN, SECRET
from waypost.devtools import payloads
from waypost.logs import setup_logging

ENDPOINT = "/api/webhooks/whatsapp"  # the path Waypost serves its webhook on: one driver for both
VERIFY_TOKEN = "bench"
QUESTION = "what are your opening hours?"
RULES = Path(__file__).resolve().parent.parent / "worker" / "orchestrator" / "default_rules.toml"


def answer() -> str:
    """What Waypost's rules provider answers QUESTION with (its default rules' "opening hours")."""
    rules = tomllib.loads(RULES.read_text())["rules"]
    return str(next(rule["answer"] for rule in rules if rule["name"] == "opening hours"))


def on_graph(session: httpx.Client | httpx.AsyncClient, graph: str) -> None:
    """pywa fixes its base URL to https://graph.facebook.com/vNN (pywa/api.py GraphAPI.__init__, on the
    session it is given): keep its path, swap scheme, host and port for the fake's."""
    fake = httpx.URL(graph)
    session.base_url = session.base_url.copy_with(scheme=fake.scheme, host=fake.host, port=fake.port)


def build(graph: str, flavour: str = "sync") -> Starlette:
    """The pywa app: pywa (sync handlers, run in a thread pool: the first example of pywa's docs) or
    pywa_async (handlers on the event loop)."""
    text = answer()
    app = Starlette()
    options: dict[str, Any] = {
        "phone_id": payloads.PHONE_NUMBER_ID,
        "token": ACCESS_TOKEN,
        "server": cast(Any, app),  # pywa's hint names Flask and FastAPI; it takes Starlette (its own server)
        "webhook_endpoint": ENDPOINT,
        "verify_token": VERIFY_TOKEN,
        "app_secret": SECRET,
        "validate_updates": True,
        # to the phone number when the webhook has one, as Waypost addresses its replies (README "Contacts")
        "user_identifier_priority": (UserIdentifier.WA_ID, UserIdentifier.BSUID, UserIdentifier.PARENT_BSUID),
    }
    if flavour == "async":
        from pywa_async import WhatsApp as AsyncWhatsApp
        from pywa_async import filters as async_filters
        from pywa_async import types as async_types

        async_session = httpx.AsyncClient(timeout=10)
        async_wa = AsyncWhatsApp(session=async_session, **options)
        on_graph(async_session, graph)

        @async_wa.on_message(async_filters.text)  # type: ignore[misc]  # (pywa's overloads confuse mypy)
        async def reply_async(_: AsyncWhatsApp, msg: async_types.Message) -> None:
            # pywa_async's Message.reply_text is a coroutine; mypy reads pywa's sync signature through the MRO
            await msg.reply_text(text, quote=True)  # type: ignore[misc]

    else:
        from pywa import WhatsApp, filters, types

        session = httpx.Client(timeout=10)
        wa = WhatsApp(session=session, **options)
        on_graph(session, graph)

        @wa.on_message(filters.text)  # type: ignore[misc]  # (pywa's overloads confuse mypy)
        def reply(_: WhatsApp, msg: types.Message) -> None:
            msg.reply_text(text, quote=True)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--graph", required=True, help="the fake Graph API's URL")
    parser.add_argument("--flavour", choices=("async", "sync"), default="sync")
    args = parser.parse_args()
    setup_logging("WARNING")
    # the options of `waypost serve` (waypost/cli.py cmd_serve); uvicorn picks uvloop and httptools alike
    uvicorn.run(build(args.graph, args.flavour), host="127.0.0.1", port=args.port, log_config=None, proxy_headers=False)


if __name__ == "__main__":
    main()
