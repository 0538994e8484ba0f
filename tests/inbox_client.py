"""Signing in to the inbox from tests, as a browser would: form, cookie, CSRF token."""

from __future__ import annotations

import re
from typing import Any

import httpx
import psycopg

from waypost.operators import add_operator

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def create_operator(database_url: str, email: str = "op@example.com", password: str = PASSWORD) -> dict[str, Any]:
    return add_operator(database_url, email, password)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: httpx.Client, email: str = "op@example.com", password: str = PASSWORD) -> httpx.Response:
    """Post the sign-in form with the token of a freshly loaded form; returns the response."""
    token = csrf_of(client.get("/inbox/login").text)
    return client.post(
        "/inbox/login", data={"email": email, "password": password, "csrf_token": token, "next": "/inbox"}
    )


class Inbox:
    """A signed-in client of the JSON API."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        answer = sign_in(client)
        assert answer.status_code == 303, answer.text
        self.csrf = csrf_of(client.get("/inbox").text)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params)

    def post(self, path: str, json: Any = None, csrf: str | None = "") -> httpx.Response:
        headers = {} if csrf is None else {"X-CSRF-Token": csrf or self.csrf}
        return self.client.post(path, json=json if json is not None else {}, headers=headers)


def conversation_id(db: psycopg.Connection, wa_id: str = "16505551234") -> int:
    row = db.execute("SELECT id FROM conversations WHERE wa_id = %s AND deleted_at IS NULL", (wa_id,)).fetchone()
    assert row is not None
    return int(row["id"])  # type: ignore[call-overload]
