"""Installs the functions that find everything stored about a contact and erase it (0020_erasure).
Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0020_erasure"}

FUNCTIONS = (
    ("waypost_contact_identifiers_v1", "text"),
    ("waypost_erase_contact_v1", "text, text"),
)

steps = [step(function_source(name), f"DROP FUNCTION IF EXISTS {name}({args})") for name, args in FUNCTIONS]
