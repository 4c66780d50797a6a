from __future__ import annotations

import json

from opskit._core.http import Headers, problem_json, status_line


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    h = Headers([("X-Forwarded-For", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2"), ("Host", "a")])
    assert h.get("X-FORWARDED-FOR") == "1.1.1.1, 2.2.2.2"
    assert h.getall("x-forwarded-for") == ["1.1.1.1", "2.2.2.2"]
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert h.getall("missing") == []
    assert "HOST" in h and "nope" not in h and 3 not in h
    assert len(h) == 2
    assert sorted(h) == ["host", "x-forwarded-for"]
    assert ("host", "a") in list(h.items())


def test_headers_repr_never_shows_values() -> None:
    h = Headers([("Authorization", "Bearer s3cr3t")])
    assert "s3cr3t" not in repr(h)
    assert "authorization" in repr(h)


def test_headers_from_asgi_and_environ() -> None:
    a = Headers.from_asgi([(b"content-type", b"text/plain"), (b"x-a", b"\xe9")])
    assert a.get("Content-Type") == "text/plain"
    assert a.get("x-a") == "\xe9"  # latin-1, never a decode error
    e = Headers.from_environ(
        {"HTTP_X_API_KEY": "k", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "",
         "REQUEST_METHOD": "POST"}
    )  # fmt: skip
    assert e.get("x-api-key") == "k"
    assert e.get("content-type") == "application/json"
    assert "content-length" not in e
    assert "request-method" not in e


def test_headers_of_accepts_many_shapes() -> None:
    h = Headers([("a", "1")])
    assert Headers.of(h) is h
    assert Headers.of(None).get("a") is None
    assert Headers.of({"Stripe-Signature": "t=1"}).get("stripe-signature") == "t=1"
    assert Headers.of([(b"a", b"1"), (b"A", b"2")]).getall("a") == ["1", "2"]

    class MultiDict:  # Werkzeug-like: iteration yields pairs, getlist gives all values
        def __init__(self) -> None:
            self._d = {"X-A": ["1", "2"]}

        def keys(self) -> list[str]:
            return list(self._d)

        def getlist(self, k: str) -> list[str]:
            return next(v for kk, v in self._d.items() if kk.lower() == k.lower())

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([("X-A", "1"), ("X-A", "2")])

    assert Headers.of(MultiDict()).getall("x-a") == ["1", "2"]


def test_problem_json_is_rfc9457() -> None:
    doc = json.loads(problem_json(429, detail="slow down", type="urn:x", retry_after=3))
    assert doc == {"type": "urn:x", "title": "Too Many Requests", "status": 429,
                   "detail": "slow down", "retry_after": 3}  # fmt: skip
    assert json.loads(problem_json(599))["title"] == "Error"
    assert json.loads(problem_json(400, "Bad", instance="/x"))["instance"] == "/x"


def test_status_line() -> None:
    assert status_line(429) == "429 Too Many Requests"
    assert status_line(599) == "599 Unknown"
