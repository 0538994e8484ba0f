"""Installs the consent check (0018_consent): used by nothing yet, it is what a template send will
ask before a marketing template goes out. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0018_consent"}

steps = [
    step(
        function_source("waypost_may_receive_marketing_v1"),
        "DROP FUNCTION IF EXISTS waypost_may_receive_marketing_v1(text, text, text)",
    )
]
