"""Operator accounts: argon2id password hashes (argon2-cffi) and the queries behind them. Used by
`waypost operator ...` and by the inbox's sign-in. A new password, disabling an operator and
`--revoke` end the operator's inbox sessions in the same transaction."""

from __future__ import annotations

import functools
import re
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from waypost.db import connect_sync, execute_sync, fetch_all_sync, fetch_optional_sync
from waypost.errors import BadOperatorInput, NoSuchOperator, OperatorExists

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
MIN_PASSWORD_LENGTH = 12
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise BadOperatorInput(f"{email!r} is not an email address")
    return email


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadOperatorInput(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so that a wrong email costs as much as a wrong password."""
    return _hasher.hash("waypost-no-such-operator")


def check_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the operator exists (argon2 compares in constant time)."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def rehash_if_needed(password_hash: str, password: str) -> str | None:
    """A new hash when the library's recommended parameters moved since this one was made."""
    return _hasher.hash(password) if _hasher.check_needs_rehash(password_hash) else None


def add_operator(database_url: str, email: str, password: str, *, replace: bool = False) -> dict[str, Any]:
    """Create an operator, or with `replace` set a new password for an existing one (which ends
    every session it has: whoever knew the old password is signed out)."""
    email = normalise_email(email)
    password_hash = hash_password(password)
    with connect_sync(database_url) as conn:
        name = "operator_upsert" if replace else "operator_insert"
        try:
            row = fetch_optional_sync(conn, name, email=email, password_hash=password_hash)
        except psycopg.errors.UniqueViolation:
            raise OperatorExists(f"operator {email} exists already (use --reset-password)") from None
        if row is None:
            raise OperatorExists(f"operator {email} exists already (use --reset-password)")
        if replace:
            end_sessions(conn, row["id"], "password_reset")
        return row


def password_matches(database_url: str, email: str, password: str) -> bool:
    """Whether `email` is an enabled operator whose password is `password`."""
    with connect_sync(database_url) as conn:
        row = fetch_optional_sync(conn, "operator_by_email", email=normalise_email(email))
    return row is not None and check_password(row["password_hash"], password)


def _operator(conn: psycopg.Connection[dict[str, Any]], email: str) -> dict[str, Any]:
    row = fetch_optional_sync(conn, "operator_id_by_email", email=normalise_email(email))
    if row is None:
        raise NoSuchOperator(f"no operator {email}")
    return row


def end_sessions(conn: psycopg.Connection[dict[str, Any]], operator_id: int, reason: str) -> int:
    """End every live session of the operator; how many there were."""
    return execute_sync(conn, "operator_sessions_end_all", operator_id=operator_id, reason=reason)


def set_disabled(database_url: str, email: str, disabled: bool) -> int:
    """Disable an operator (their sessions end at once) or enable them again; sessions ended."""
    with connect_sync(database_url) as conn:
        found = fetch_optional_sync(conn, "operator_set_disabled", email=normalise_email(email), disabled=disabled)
        if found is None:
            raise NoSuchOperator(f"no operator {email}")
        return end_sessions(conn, found["id"], "disabled") if disabled else 0


def sessions(database_url: str, email: str, idle_seconds: float) -> list[dict[str, Any]]:
    """An operator's sessions, newest first, with their state (active, expired, ended: reason)."""
    with connect_sync(database_url) as conn:
        operator = _operator(conn, email)
        return fetch_all_sync(conn, "operator_sessions_list", operator_id=operator["id"], idle_seconds=idle_seconds)


def revoke_sessions(database_url: str, email: str) -> int:
    """End every live session of the operator; how many there were."""
    with connect_sync(database_url) as conn:
        return end_sessions(conn, _operator(conn, email)["id"], "revoked")
