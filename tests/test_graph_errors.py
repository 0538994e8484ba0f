"""Classification of Graph API error answers: what may be retried, what never will succeed."""

from __future__ import annotations

import httpx
import pytest

from waypost.devtools.fake_graph import error_body
from worker.graph import classify_response


def answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize("code", [130429, 131056, 131000, 131016, 131057, 1, 2, 4, 80007])
def test_retryable_codes(code: int) -> None:
    assert classify_response(answer(400, error_body(code))).kind == "retryable"


@pytest.mark.parametrize("code", [131047, 131026, 131050, 130403, 190, 100])
def test_permanent_codes_even_under_5xx(code: int) -> None:
    failure = classify_response(answer(500, error_body(code)))
    assert (failure.kind, failure.code) == ("permanent", code)
    assert failure.as_errors()[0]["code"] == code


def test_unknown_4xx_is_permanent_and_5xx_retryable_whatever_the_body() -> None:
    assert classify_response(answer(400, {"error": {"code": 999999}})).kind == "permanent"
    for body in (None, ["not", "a", "dict"], {"error": "text"}, {"error": {"error_data": "x"}}):
        assert classify_response(answer(502, body)).kind == "retryable", body
    assert classify_response(httpx.Response(503, content=b"<html>down</html>")).kind == "retryable"


def test_retry_after_seconds_and_http_date() -> None:
    assert classify_response(answer(429, error_body(130429), **{"Retry-After": "7"})).retry_after == 7.0
    dated = classify_response(answer(429, {}, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert dated.retry_after == 0.0  # in the past: retry now
    assert classify_response(answer(429, {}, **{"Retry-After": "soon"})).retry_after is None


def test_reason_quotes_metas_details() -> None:
    failure = classify_response(answer(400, error_body(131047)))
    assert "131047" in str(failure) and "24 hours" in str(failure)
