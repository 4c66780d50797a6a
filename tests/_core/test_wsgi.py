from __future__ import annotations

import io
import json
from typing import Any

import pytest

from opskit._core.http import BodyTooLarge
from opskit._core.wsgi import problem_response, read_body, request_headers


class CountingInput(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, n: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(n)


def test_read_body_reads_exactly_content_length_and_puts_it_back() -> None:
    stream = CountingInput(b"hello-and-more")
    env: dict[str, Any] = {"wsgi.input": stream, "CONTENT_LENGTH": "5"}
    assert read_body(env, max_bytes=100) == b"hello"
    assert env["wsgi.input"].read() == b"hello"  # the app reads the same bytes again
    assert env["CONTENT_LENGTH"] == "5"


def test_read_body_refuses_declared_length_over_cap_without_reading() -> None:
    stream = CountingInput(b"x" * 50)
    with pytest.raises(BodyTooLarge):
        read_body({"wsgi.input": stream, "CONTENT_LENGTH": "50"}, max_bytes=10)
    assert stream.reads == 0


def test_read_body_without_length_is_empty_unless_input_terminated() -> None:
    env: dict[str, Any] = {"wsgi.input": io.BytesIO(b"abc")}
    assert read_body(env) == b""
    env = {"wsgi.input": io.BytesIO(b"abc"), "wsgi.input_terminated": True}
    assert read_body(env) == b"abc"
    big = {"wsgi.input": io.BytesIO(b"x" * 200_000), "wsgi.input_terminated": True}
    with pytest.raises(BodyTooLarge):
        read_body(big, max_bytes=100_000)


def test_read_body_tolerates_garbage_length_and_short_input() -> None:
    assert read_body({"wsgi.input": io.BytesIO(b"abc"), "CONTENT_LENGTH": "x"}) == b""
    assert read_body({"wsgi.input": io.BytesIO(b"abc"), "CONTENT_LENGTH": "²"}) == b""
    assert read_body({"wsgi.input": io.BytesIO(b"ab"), "CONTENT_LENGTH": "10"}) == b"ab"
    assert read_body({}) == b""


def test_problem_response() -> None:
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, headers))
        return lambda b: None

    body = b"".join(problem_response(start_response, 403, detail="no", headers=[("X-A", "1")]))
    status, headers = seen[0]
    assert status == "403 Forbidden"
    assert ("Content-Type", "application/problem+json") in headers
    assert ("X-A", "1") in headers
    assert json.loads(body) == {"type": "about:blank", "title": "Forbidden", "status": 403,
                                "detail": "no"}  # fmt: skip
    assert request_headers({"HTTP_X_A": "1"}).get("X-A") == "1"
