"""X-Hub-Signature-256: HMAC-SHA256 of the raw body with the Meta app secret."""

from __future__ import annotations

import hmac
from typing import Literal

from waypost.signing import sign

Verdict = Literal["valid", "missing", "invalid", "not_checked"]


def check(secret: str, body: bytes, header: str | None) -> Verdict:
    # Hash the bytes as received: re-serialised JSON differs in escapes and key order.
    if not header:
        return "missing"
    expected = sign(secret, body).encode()
    given = header.strip().lower().encode("utf-8", "replace")
    return "valid" if hmac.compare_digest(expected, given) else "invalid"


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if that is what it is."""
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


def tokens_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an empty token, given or expected, never matches anything."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
