from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import requests

from opskit.retry import retry_after_from

NOW = 1_700_000_000.0


def http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset, tz=timezone.utc), usegmt=True)


class Err(Exception):
    def __init__(self, retry_after: Any) -> None:
        self.retry_after = retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (0.5, 0.5), (0, 0.0), (-1, None), (float("nan"), None), (float("inf"), None),
     (True, None), ("7", None), (None, None)],
)  # fmt: skip
def test_retry_after_attribute(value: Any, expected: float | None) -> None:
    assert retry_after_from(Err(value)) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 5 ", 5.0), ("0", 0.0), ("-5", None), ("1.5", None), ("soon", None),
     ("", None), (http_date(30), 30.0), (http_date(-30), 0.0),
     ("Wed, 21 Oct 2015 07:28:00", None), ("Wed, 99 Foo 2015 07:28:00 GMT", None)],
)  # fmt: skip
def test_retry_after_header_on_an_httpx_response(header: str, expected: float | None) -> None:
    resp = httpx.Response(429, headers={"Retry-After": header})
    got = retry_after_from(resp, now=NOW)
    assert got == (None if expected is None else pytest.approx(expected, abs=1))


def test_retry_after_on_exceptions_holding_a_response() -> None:
    req = httpx.Request("GET", "https://api.example.com/")
    resp = httpx.Response(503, headers={"retry-after": "9"}, request=req)
    err = httpx.HTTPStatusError("503", request=req, response=resp)
    assert retry_after_from(err) == 9.0
    r = requests.Response()
    r.status_code = 429
    r.headers["Retry-After"] = "11"
    assert retry_after_from(r) == 11.0
    assert retry_after_from(requests.HTTPError(response=r)) == 11.0


def test_absent_or_strange_inputs_give_none() -> None:
    assert retry_after_from(None) is None
    assert retry_after_from(ValueError("x")) is None
    assert retry_after_from(httpx.Response(200)) is None

    class BadHeaders:
        headers = property(lambda self: 1 / 0)

    class Weird:
        class headers:
            @staticmethod
            def get(name: str) -> Any:
                raise RuntimeError("boom")

    assert retry_after_from(Weird()) is None
    with pytest.raises(ZeroDivisionError):
        BadHeaders().headers  # noqa: B018
    assert retry_after_from(type("R", (), {"headers": {"Retry-After": b"4"}})()) == 4.0
