"""Installs the SQL functions that own Waypost's invariants, from sql/functions/.

Each function file is versioned by name (`_v1`) and never edited once released: a change is a
new `_v2` file installed by a new migration, like procrastinate's own functions. CREATE OR
REPLACE keeps this migration re-runnable, which `waypost migrate` relies on to repair drift.
"""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0002_waypost_tables"}

FUNCTIONS = (
    ("waypost_status_rank_v1", "text"),
    ("waypost_advance_message_status_v1", "bigint, text, timestamptz, jsonb"),
    ("waypost_ingest_inbound_message_v1", "text, text, text, text, text, text, jsonb, timestamptz, boolean, text"),
    ("waypost_apply_message_status_v1", "text, text, timestamptz, text, text, jsonb, jsonb"),
)

steps = [step(function_source(name), f"DROP FUNCTION IF EXISTS {name}({args})") for name, args in FUNCTIONS]
