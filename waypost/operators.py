"""Operator accounts: argon2id password hashes (argon2-cffi) and the queries behind them. Used by
`waypost operator add` and by the inbox's sign-in."""

from __future__ import annotations

import functools
import re
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from waypost.sql import query

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
MIN_PASSWORD_LENGTH = 12
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class OperatorError(ValueError):
    pass


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise OperatorError(f"{email!r} is not an email address")
    return email


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
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
    """Create an operator, or with `replace` set a new password for an existing one."""
    email = normalise_email(email)
    password_hash = hash_password(password)
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        name = "operator_upsert" if replace else "operator_insert"
        try:
            row = conn.execute(query(name), {"email": email, "password_hash": password_hash}).fetchone()
        except psycopg.errors.UniqueViolation:
            raise OperatorError(f"operator {email} exists already (use --reset-password)") from None
        if row is None:
            raise OperatorError(f"operator {email} exists already (use --reset-password)")
        return row
