"""Shared secrets, compared safely; and Meta's webhook signature both ways: X-Hub-Signature-256 is
HMAC-SHA256 of the raw body with the app secret. The web app checks it, the dev tools sign with it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

Verdict = Literal["valid", "missing", "invalid", "not_checked"]


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta would send for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check(secret: str, body: bytes, header: str | None) -> Verdict:
    # Hash the bytes as received: re-serialised JSON differs in escapes and key order.
    if not header:
        return "missing"
    expected = sign(secret, body).encode()
    given = header.strip().lower().encode("utf-8", "replace")
    return "valid" if hmac.compare_digest(expected, given) else "invalid"


def tokens_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an empty token, given or expected, never matches anything."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
