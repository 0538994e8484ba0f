"""X-Hub-Signature-256: HMAC-SHA256 of the raw body with the Meta app secret."""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

Verdict = Literal["valid", "missing", "invalid", "not_checked"]


def sign(secret: str, body: bytes) -> str:
    """The header value Meta would send for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check(secret: str, body: bytes, header: str | None) -> Verdict:
    # Hash the bytes as received: re-serialised JSON differs in escapes and key order.
    if not header:
        return "missing"
    expected = sign(secret, body).encode()
    given = header.strip().lower().encode("utf-8", "replace")
    return "valid" if hmac.compare_digest(expected, given) else "invalid"


def tokens_equal(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
