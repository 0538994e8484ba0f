"""The webhook under random input (hypothesis): random JSON, Meta's payload with fields of the wrong
type, raw bytes that are not UTF-8, huge strings, deep nesting, any content type. Every request gets
a 2xx or 4xx answer, never a 5xx, and every POST lands in the journal."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import post_webhook
from waypost.devtools import payloads
from waypost.text import REPLACEMENT
from webhook import payload

# WAYPOST_FUZZ_EXAMPLES=2000 for a longer hunt than CI's
FUZZ = settings(
    max_examples=int(os.environ.get("WAYPOST_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, for replacing what is there."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    document = copy.deepcopy(document)
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


VALID = payloads.inbound(payloads.text_message("fuzz me"))
VALID_PATHS = paths(VALID)


class Journal:
    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db
        self.posts = 0
        self.start = self.count()

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"])  # type: ignore[index]

    def post(self, client: httpx.Client, body: bytes, content_type: str = "application/json") -> httpx.Response:
        answer = post_webhook(client, body, **{"Content-Type": content_type})
        self.posts += 1
        assert answer.status_code < 500, (answer.status_code, answer.text, body[:300])
        return answer

    def check(self) -> None:
        assert self.count() - self.start == self.posts, "a POST is missing from the journal"


def test_random_json(client: httpx.Client, db: psycopg.Connection) -> None:
    journal = Journal(db)

    @FUZZ
    @given(value=json_values, content_type=CONTENT_TYPES)
    def post(value: Any, content_type: str) -> None:
        journal.post(client, json.dumps(value).encode(), content_type)

    post()
    journal.check()


def test_metas_payload_with_wrong_types_anywhere(client: httpx.Client, db: psycopg.Connection) -> None:
    journal = Journal(db)

    @FUZZ
    @given(path=st.sampled_from(VALID_PATHS), value=json_values)
    # found by this test: a text body that is not a string (500, or a false DB_MISMATCH), Infinity
    @example(path=("entry", 0, "changes", 0, "value", "messages", 0, "text", "body"), value={"a": 1})
    @example(path=("entry", 0, "changes", 0, "value", "messages", 0, "text", "body"), value=7)
    @example(path=("entry", 0, "changes", 0, "value", "messages", 0, "text"), value=float("inf"))
    def post(path: tuple[Any, ...], value: Any) -> None:
        document = replaced(VALID, path, value)
        # a fresh message id each time, so that valid variants are stored rather than deduplicated
        with contextlib.suppress(KeyError, IndexError, TypeError):  # unless that is the part it broke
            document["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = payloads.new_wamid()
        journal.post(client, json.dumps(document).encode())

    post()
    journal.check()


def test_bytes_that_are_not_utf8(client: httpx.Client, db: psycopg.Connection) -> None:
    journal = Journal(db)

    @FUZZ
    @given(body=st.binary(max_size=2000), content_type=CONTENT_TYPES)
    def post(body: bytes, content_type: str) -> None:
        answer = journal.post(client, body, content_type)
        assert answer.status_code in (200, 400), answer.text

    post()
    journal.check()


def test_huge_strings_and_deep_nesting(client: httpx.Client, db: psycopg.Connection) -> None:
    journal = Journal(db)
    big_text = payloads.inbound(payloads.text_message("x" * 3_000_000))  # under the 4 MiB limit
    assert journal.post(client, payloads.dumps(big_text)).status_code in (200, 400)
    too_big = payloads.inbound(payloads.text_message("y" * 5_000_000))
    assert journal.post(client, payloads.dumps(too_big)).status_code == 413
    huge_key = {"object": "whatsapp_business_account", "k" * 1_000_000: 1, "entry": []}
    assert journal.post(client, json.dumps(huge_key).encode()).status_code < 500
    for depth in (1_000, 100_000):
        assert journal.post(client, b"[" * depth + b"]" * depth).status_code == 400
        # deep inside Meta's envelope, where the value of a change belongs
        nested = b'{"entry":' * depth + b"{}" + b"}" * depth
        document = json.dumps(replaced(VALID, ("entry", 0, "changes", 0, "value"), "@@")).encode()
        assert journal.post(client, document.replace(b'"@@"', nested)).status_code == 400
    nul = payloads.inbound(
        payloads.text_message(
            "nul \u0000 byte and \ud800 lone surrogate".encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        )
    )
    assert journal.post(client, payloads.dumps(nul)).status_code == 200
    journal.check()


def strings_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in strings_in(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


ODD = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\U0001f600", "\ufffd", "\\", "u"]


@FUZZ
@given(
    texts=st.lists(st.text(alphabet=st.characters() | st.sampled_from(ODD), max_size=8), min_size=1, max_size=4),
    ascii_only=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]),
)
@example(texts=["x\ud800y"], ascii_only=False, encoding="utf-8")  # a surrogate's raw bytes (surrogatepass)
@example(texts=["\x00"], ascii_only=False, encoding="utf-8")  # a NUL, escaped
@example(texts=["\udc00"], ascii_only=True, encoding="utf-8")  # a lone surrogate, escaped
@example(texts=["\U0001f600 ok"], ascii_only=True, encoding="utf-8")  # a pair of surrogate escapes: one emoji
def test_parsed_strings_hold_no_nul_and_no_lone_surrogate(texts: list[str], ascii_only: bool, encoding: str) -> None:
    """The parser cleans only bodies that may need it (issue 17): whatever the escapes and the
    encoding, what it returns is what cleaning every string would give."""
    document = {"object": "whatsapp_business_account", "entry": [], **{f"k{i}{t}": t for i, t in enumerate(texts)}}
    body = json.dumps(document, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")
    parsed = payload._document(body)
    assert parsed == payload._scrub(json.loads(body))
    for text in strings_in(parsed):
        assert "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text), ascii(text)
    assert REPLACEMENT in "".join(strings_in(parsed)) or parsed == document


@pytest.mark.parametrize(
    ("escaped", "cleaned"),
    [(rb"x\u0000y", "x\ufffdy"), (rb"\uD83Dy", "\ufffdy"), (rb"\uDFFF", "\ufffd"), (rb"\\u0000", "\\u0000")],
)
def test_escapes_in_either_case_are_cleaned(escaped: bytes, cleaned: str) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": [], "t": "' + escaped + b'"}'
    assert payload._document(body)["t"] == cleaned


@pytest.mark.parametrize("number", [b"NaN", b"-Infinity", b"Infinity", b"1e999", b"-1e999"])
def test_numbers_jsonb_cannot_hold_are_refused(number: bytes) -> None:
    with pytest.raises(payload.PayloadError, match="NaN and Infinity are not JSON numbers"):
        payload._document(b'{"object": "whatsapp_business_account", "x": ' + number + b"}")
