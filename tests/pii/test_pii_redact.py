"""Redaction: structlog processor on nested events, the stdlib filter, Redacted."""

from __future__ import annotations

import io
import json
import logging
import pickle
import subprocess
import sys

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from opskit.pii import Redacted, RedactingFilter, redact_processor, redact_text

PHONE = "+41 79 123 45 67"


def render(processor: object, **event: object) -> dict[str, object]:
    return dict(processor(None, "info", dict(event)))  # type: ignore[operator]


def test_mask_nested_fields_without_touching_the_callers_objects() -> None:
    proc = redact_processor(fields={"email", "phone"})
    user = {"id": 7, "Email": "a@example.com", "contacts": [{"phone": PHONE}, "free text"]}
    out = render(proc, event="signup", user=user, phone=PHONE)
    contacts = [{"phone": "***"}, "free text"]
    assert out == {"event": "signup", "phone": "***",
                   "user": {"id": 7, "Email": "***", "contacts": contacts}}  # fmt: skip
    assert user["Email"] == "a@example.com"  # a copy was redacted, not the caller's dict


def test_patterns_inside_strings_keep_the_text_around() -> None:
    proc = redact_processor(patterns=("email", "phone", "card"))
    out = render(proc, event="paid by alice@example.com card 4111 1111 1111 1111, call "
                 f"{PHONE}; order 12345", note=["ring 079 123 45 67"])  # fmt: skip
    assert out["event"] == "paid by *** card ***, call ***; order 12345"
    assert out["note"] == ["ring ***"]


@pytest.mark.parametrize(
    ("text", "want"),
    [("order 12345", "order 12345"), ("4111 1111 1111 1112", "4111 1111 1111 1112"),
     ("5555555555554444", "***"), ("x 2024-01-15T10:30:00Z", "x 2024-01-15T10:30:00Z"),
     ("from 192.168.100.200", "from 192.168.100.200"), ("tel 079.123.45.67", "tel ***"),
     ("uuid 550e8400-e29b-41d4-a716-446655440000", "uuid 550e8400-e29b-41d4-a716-446655440000"),
     ("+1-202-555-0143.", "***."), ("6 digits 123456", "6 digits 123456"),
     ("7 digits 1234567", "7 digits ***"),
     ("16 digits 1234567890123456", "16 digits 1234567890123456")],
)  # fmt: skip
def test_pattern_edges(text: str, want: str) -> None:
    assert redact_text(text) == want


def test_hash_mode_is_keyed_stable_across_processes_and_drop_mode_drops() -> None:
    proc = redact_processor(fields={"email"}, mode="hash", hash_key=b"k" * 32)
    a = render(proc, event="e", email="a@example.com")["email"]
    assert isinstance(a, str) and a.startswith("sha256:") and "example" not in a
    code = (
        "from opskit.pii import redact_processor\n"
        "p = redact_processor(fields={'email'}, mode='hash', hash_key=b'k' * 32)\n"
        "print(p(None, 'info', {'email': 'a@example.com'})['email'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == a
    other = redact_processor(fields={"email"}, mode="hash")  # random key: differs
    assert render(other, email="a@example.com")["email"] != a
    drop = redact_processor(fields={"email", "tax_id"}, mode="drop")
    assert render(drop, event="e", email="x", nested={"tax_id": "1"}) == {
        "event": "e",
        "nested": {},
    }
    with pytest.raises(ValueError, match="mode"):
        redact_processor(fields={"x"}, mode="erase")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pattern"):
        redact_processor(patterns=("ssn",))


def test_structlog_end_to_end_with_json_renderer() -> None:
    buf = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(buf),
        processors=[
            redact_processor(fields={"email"}, patterns=("phone",)),
            structlog.processors.JSONRenderer(),
        ],
    )
    logger.info("user called from " + PHONE, email="a@example.com", secret=Redacted("s3cr3t"))
    line = json.loads(buf.getvalue())
    assert line == {"event": "user called from ***", "email": "***", "secret": "***"}


def test_redacted_hides_its_value() -> None:
    r = Redacted(PHONE)
    assert str(r) == repr(r) == f"{r}" == "Redacted('***')"
    assert r.reveal() == PHONE
    assert PHONE not in repr([r, {"k": r}])
    with pytest.raises(TypeError):
        pickle.dumps(r)


def test_logging_filter_redacts_message_args_dicts_and_extra() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s|%(email)s|%(user)s"))
    handler.addFilter(RedactingFilter(fields={"email"}, patterns=("email", "phone")))
    log = logging.getLogger("opskit.tests.pii.redact")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        extra = {"email": "bob@example.com", "user": {"email": "b@e.com", "id": 3}}
        log.info("login %s from %s", "bob@example.com", PHONE, extra=extra)
        first = stream.getvalue().strip()
        assert first == "login *** from ***|***|{'email': '***', 'id': 3}"
        stream.truncate(0)
        stream.seek(0)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.info("user %(email)s is %(id)d", {"email": "c@example.com", "id": 4})
        assert stream.getvalue().strip() == "user *** is 4"
        stream.truncate(0)
        stream.seek(0)

        class User:
            def __str__(self) -> str:
                return "User(d@example.com)"

        log.info("obj %s, %d items", User(), 3)
        assert stream.getvalue().strip() == "obj User(***), 3 items"
    finally:
        log.removeHandler(handler)


_words = st.text(alphabet="abcdefghij ", min_size=0, max_size=12)
_emails = st.from_regex(r"[a-z][a-z0-9._]{0,10}@[a-z]{1,8}\.(com|ch|co\.uk)", fullmatch=True)
_phones = st.from_regex(r"\+?[1-9][0-9]{1,2}( [0-9]{2,3}){3}", fullmatch=True)  # 8-12 digits


@given(_words, st.one_of(_emails, _phones), _words)
def test_patterns_mask_the_value_and_keep_the_words_around(
    before: str, value: str, after: str
) -> None:
    text = f"{before} {value} {after}"
    assert redact_text(text) == f"{before} *** {after}"


@given(st.integers(min_value=0, max_value=999_999))
def test_six_digits_or_fewer_are_never_a_phone(n: int) -> None:
    assert redact_text(f"order {n} shipped") == f"order {n} shipped"
