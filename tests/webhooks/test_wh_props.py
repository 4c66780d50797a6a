"""Properties: tampering never verifies; arbitrary headers only raise WebhookError."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opskit.testing import ManualClock
from opskit.webhooks import (
    BearerSecret,
    GitHub,
    HMACScheme,
    MalformedHeader,
    Shopify,
    SignatureMismatch,
    Slack,
    StandardWebhooks,
    Stripe,
    TimestampOutOfTolerance,
    Twilio,
    WebhookError,
)
from webhooks._wh import SW_SECRET

T0 = 1_700_000_000
CLOCK = ManualClock(wall_start=T0)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCHEMES: dict[str, Any] = {
    "sw": StandardWebhooks(secrets=[SW_SECRET, "whsec_AAAAAAAA"], clock=CLOCK, metrics=False),
    "stripe": Stripe(secrets=["whsec_a", "whsec_b"], clock=CLOCK, metrics=False),
    "slack": Slack(secrets=["s"], clock=CLOCK, metrics=False),
    "github": GitHub(secrets=["g"], metrics=False),
    "shopify": Shopify(secrets=["h"], metrics=False),
    "hmac": HMACScheme("h", header="X-Sig", secrets=["k"], encoding="base64", metrics=False),
    "twilio": Twilio(auth_tokens=["t"], metrics=False),
}
URL = "https://example.com/hook?x=1"


def sign(name: str, body: bytes, ts: int = T0) -> dict[str, str]:
    s = SCHEMES[name]
    if name == "sw":
        return dict(s.sign("msg_1", ts, body))
    if name in ("stripe", "slack"):
        return dict(s.sign(body, ts))
    if name == "twilio":
        return dict(s.sign(URL, body))
    return dict(s.sign(body))


def verify(name: str, body: bytes, headers: Any) -> Any:
    s = SCHEMES[name]
    return s.verify(body, headers, url=URL) if name == "twilio" else s.verify(body, headers)


names = st.sampled_from(sorted(SCHEMES))


@SETTINGS
@given(name=names, body=st.binary(max_size=300), data=st.data())
def test_any_change_to_the_body_fails(name: str, body: bytes, data: st.DataObject) -> None:
    headers = sign(name, body)
    assert verify(name, body, headers).body == body
    other = data.draw(st.binary(max_size=300).filter(lambda b: b != body))
    if name == "twilio":
        # Twilio signs the URL and then each parameter's name and value, sorted, run
        # together: bodies that run together the same are the same to it ("=" and "",
        # "a=b" and "ab="), whatever their spelling.
        from urllib.parse import parse_qsl

        def signed(b: bytes) -> str:
            pairs = parse_qsl(b.decode("utf-8", "replace"), keep_blank_values=True)
            return "".join(k + v for k, v in sorted(set(pairs)))

        if signed(other) == signed(body):
            return
    try:
        verify(name, other, headers)
    except SignatureMismatch:
        return
    raise AssertionError("a changed body verified")


@SETTINGS
@given(name=st.sampled_from(["sw", "stripe", "slack"]), delta=st.integers(-(10**6), 10**6))
def test_any_change_to_the_timestamp_fails(name: str, delta: int) -> None:
    headers = sign(name, b"{}")
    if delta == 0:
        return
    ts_header = {"sw": "webhook-timestamp", "slack": "X-Slack-Request-Timestamp"}.get(name)
    if ts_header:
        headers[ts_header] = str(T0 + delta)
    else:
        headers["Stripe-Signature"] = headers["Stripe-Signature"].replace(
            f"t={T0}", f"t={T0 + delta}"
        )
    try:
        verify(name, b"{}", headers)
    except (SignatureMismatch, MalformedHeader):
        return
    raise AssertionError("a changed timestamp verified")


@SETTINGS
@given(name=names, pos=st.integers(0, 10_000), char=st.characters(codec="ascii"))
def test_any_change_to_the_signature_fails(name: str, pos: int, char: str) -> None:
    headers = sign(name, b"payload=1")
    key = {
        "sw": "webhook-signature",
        "stripe": "Stripe-Signature",
        "slack": "X-Slack-Signature",
        "github": "X-Hub-Signature-256",
        "shopify": "X-Shopify-Hmac-Sha256",
        "hmac": "X-Sig",
        "twilio": "X-Twilio-Signature",
    }[name]
    value = headers[key]
    start = {"sw": 3, "stripe": value.find("v1=") + 3, "slack": 3, "github": 7}.get(name, 0)
    i = start + pos % (len(value) - start)
    if value[i] == char or (value[i].lower() == char.lower() and name in ("github", "slack")):
        return
    headers[key] = value[:i] + char + value[i + 1 :]
    try:
        verify(name, b"payload=1", headers)
    except WebhookError:
        return
    raise AssertionError("a changed signature verified")


header_values = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="tv01=,. ", max_size=60),
    st.builds(lambda n: " ".join(["v1,AAAA"] * n), st.integers(0, 40)),
    st.binary(max_size=100),
    st.just("x" * 9000),
)
header_names = st.sampled_from(
    ["webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp",
     "svix-signature", "Stripe-Signature", "X-Slack-Signature", "X-Slack-Request-Timestamp",
     "X-Hub-Signature-256", "X-Shopify-Hmac-Sha256", "X-Twilio-Signature", "X-Sig",
     "X-Twilio-Webhooks-Signature-Settings", "Authorization", "X-GitHub-Delivery"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    name=names,
    headers=st.dictionaries(header_names, header_values, max_size=8),
    body=st.binary(max_size=200),
    url=st.one_of(st.just(URL), st.text(max_size=40), st.just("http://h:99999/x")),
)
def test_arbitrary_headers_only_raise_webhook_errors(
    name: str, headers: dict[str, Any], body: bytes, url: str
) -> None:
    s = SCHEMES[name]
    caught: list[WebhookError] = []
    try:
        s.verify(body, headers, url=url) if name == "twilio" else s.verify(body, headers)
    except WebhookError as exc:
        caught.append(exc)
    try:
        BearerSecret(secrets=["b"], metrics=False).verify(headers)
    except WebhookError as exc:
        caught.append(exc)
    for exc in caught:
        assert exc.reason and exc.status in (400, 401)
        assert isinstance(exc, (MalformedHeader, SignatureMismatch, TimestampOutOfTolerance)) or (
            exc.reason == "missing_header"
        )


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=200),
    msg=st.binary(max_size=300),
    algorithm=st.sampled_from(["sha1", "sha256", "sha384", "sha512"]),
)
def test_precomputed_pads_are_exactly_hmac(key: bytes, msg: bytes, algorithm: str) -> None:
    import hmac

    from opskit.webhooks._schemes import _hmac_pads

    inner, outer = _hmac_pads(key, algorithm)
    i = inner.copy()
    i.update(msg)
    o = outer.copy()
    o.update(i.digest())
    assert o.digest() == hmac.new(key, msg, algorithm).digest()


raw_headers = st.lists(
    st.tuples(
        st.sampled_from([b"host", b"x-forwarded-host", b"x-forwarded-proto", b"content-length",
                         b"x-twilio-signature", b"stripe-signature", b"webhook-signature",
                         b"webhook-id", b"webhook-timestamp", b"authorization"]),
        st.binary(max_size=40),
    ),
    max_size=6,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(headers=raw_headers, body=st.binary(max_size=100), path=st.sampled_from(
    ["/tw", "/st", "/sw", "/cron"]), raw_path=st.binary(max_size=20))  # fmt: skip
def test_middleware_answers_anything_with_a_problem_not_a_crash(
    headers: list[tuple[bytes, bytes]], body: bytes, path: str, raw_path: bytes
) -> None:
    import asyncio

    from opskit.webhooks.asgi import WebhookMiddleware
    from opskit.webhooks.wsgi import WebhookMiddleware as WSGIMiddleware

    routes = {
        "/tw": SCHEMES["twilio"],
        "/st": SCHEMES["stripe"],
        "/sw": SCHEMES["sw"],
        "/cron": BearerSecret(secrets=["not-guessable-cron-secret"], metrics=False),
    }
    statuses: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("an unverified request reached the app")

    async def run() -> None:
        mw = WebhookMiddleware(app, routes, max_body=50, trusted_proxies=["127.0.0.0/8"])
        done = False

        async def receive() -> dict[str, Any]:
            nonlocal done
            if done:
                return {"type": "http.disconnect"}
            done = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                statuses.append(msg["status"])

        scope = {"type": "http", "method": "POST", "path": path, "raw_path": raw_path or None,
                 "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
                 "scheme": "http"}  # fmt: skip
        await mw(scope, receive, send)

    asyncio.run(run())

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        raise AssertionError("an unverified request reached the app")

    import io

    environ: dict[str, Any] = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "POST",
        "wsgi.input": io.BytesIO(body),
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body)),
    }
    for k, v in headers:
        if k != b"content-length":
            environ["HTTP_" + k.decode().upper().replace("-", "_")] = v.decode("latin-1")

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(int(status.split()[0]))
        return lambda b: None

    WSGIMiddleware(wsgi_app, routes, max_body=50)(environ, start_response)
    assert len(statuses) == 2
    assert all(s in (400, 401, 413) for s in statuses), statuses


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=120), st.text(alphabet="ab=&%+2Fé;", max_size=60).map(str.encode)
    )
)
def test_form_parser_matches_parse_qsl(body: bytes) -> None:
    from urllib.parse import parse_qsl

    from opskit.webhooks._schemes import _parse_form

    expected = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    assert _parse_form(body) == expected


def test_a_form_of_only_ampersands_verifies_as_the_empty_form_it_carries() -> None:
    # Found by test_any_change_to_the_body_fails: sign() of b"&" made a signature that
    # verify() refused. It carries no parameter, so Twilio and twilio-python sign the
    # URL alone for it, as for an empty body.
    from twilio.request_validator import RequestValidator

    tw = SCHEMES["twilio"]
    for body in (b"&", b"&&", b""):
        headers = sign("twilio", body)
        assert verify("twilio", body, headers).body == body
        assert RequestValidator("t").validate(URL, {}, headers["X-Twilio-Signature"])
        assert tw.verify(b"&", headers, url=URL).body == b"&"


# ------------------------------------------------------------------ mutated requests
# Issue 14, part 5: bit flips, deletions, insertions, truncations and case changes of
# every scheme's body and headers. Whatever still verifies must carry the very content
# that was signed, and its headers may differ from the signed ones only in what HTTP
# and the scheme allow: SP/HTAB around a value, hex letter case (GitHub, Slack),
# entries the scheme ignores (Stripe, Standard Webhooks).

OWS = " \t"
TWILIO_FORM = b"CallSid=CA1&From=%2B14158675309&To=%2B18005551212&Body=hi"
EXPECT = frozenset({"From", "To", "Body"})
MUTANTS: dict[str, Any] = {
    **SCHEMES,
    "twilio_strict": Twilio(auth_tokens=["t"], expect_params=EXPECT, metrics=False),
}
# The headers each scheme reads (and signs or is signed with), mutated below.
READ = {
    "sw": ["webhook-id", "webhook-timestamp", "webhook-signature"],
    "stripe": ["Stripe-Signature"],
    "slack": ["X-Slack-Signature", "X-Slack-Request-Timestamp"],
    "github": ["X-Hub-Signature-256"],
    "shopify": ["X-Shopify-Hmac-Sha256"],
    "hmac": ["X-Sig"],
    "twilio": ["X-Twilio-Signature"],
    "twilio_strict": ["X-Twilio-Signature"],
}
SIG_HEADER = {name: hs[-1] if name != "slack" else hs[0] for name, hs in READ.items()}
ODD = " \t\x0c\x0b\x1c\x1f\x85\xa0\u2028\u3000\x00\r\n=,&%+;v01aAfF\u0666\uff11\u212a"


def twilio_signed(body: bytes) -> str:
    """What Twilio signs of a form body (names and values run together, sorted)."""
    from urllib.parse import parse_qsl

    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return "".join(k + v for k, v in sorted(set(pairs)))


def signed_content(name: str, body: bytes, headers: dict[str, str]) -> Any:
    """What the provider signs, read from the raw request (no lenience but OWS)."""
    if name == "sw":
        return headers.get("webhook-id"), headers.get("webhook-timestamp"), body
    if name == "stripe":
        items = [i.strip(OWS).partition("=") for i in headers["Stripe-Signature"].split(",")]
        return [v for k, _, v in items if k == "t"], body
    if name == "slack":
        return headers.get("X-Slack-Request-Timestamp"), body
    if name.startswith("twilio"):
        return URL, twilio_signed(body)
    return body


def _ascii_lower(value: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in value)


def signature_form(name: str, value: str) -> Any:
    """A signature header up to what the scheme may ignore in it."""
    value = value.strip(OWS)
    if name == "sw":
        return sorted(e for e in value.split(" ") if e.startswith("v1,"))
    if name == "stripe":
        items = [i.strip(OWS).partition("=") for i in value.split(",")]
        return sorted(v for k, _, v in items if k == "v1")
    if name in ("github", "slack"):
        return _ascii_lower(value)
    return value


def mutate_text(data: st.DataObject, value: str) -> str:
    op = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate", "case", "replace"]))
    if op == "insert":
        i = data.draw(st.integers(0, len(value)))
        c = data.draw(st.one_of(st.sampled_from(ODD), st.characters()))
        return value[:i] + c + value[i:]
    if not value:
        return value
    i = data.draw(st.integers(0, len(value) - 1))
    if op == "flip":
        code = ord(value[i]) ^ (1 << data.draw(st.integers(0, 20)))
        return value[:i] + chr(code % 0x110000) + value[i + 1 :]
    if op == "delete":
        return value[:i] + value[i + 1 :]
    if op == "truncate":
        return value[:i]
    if op == "case":
        return value[:i] + value[i].swapcase() + value[i + 1 :]
    return value[:i] + data.draw(st.sampled_from(ODD)) + value[i + 1 :]


def mutate_bytes(data: st.DataObject, value: bytes) -> bytes:
    op = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate", "replace"]))
    if op == "insert":
        i = data.draw(st.integers(0, len(value)))
        return (
            value[:i]
            + data.draw(st.sampled_from([*b"=&%+ \t\x00\xff2B", 0x7F])).to_bytes(1, "big")
            + value[i:]
        )
    if not value:
        return value
    i = data.draw(st.integers(0, len(value) - 1))
    if op == "flip":
        return value[:i] + bytes([value[i] ^ (1 << data.draw(st.integers(0, 7)))]) + value[i + 1 :]
    if op == "delete":
        return value[:i] + value[i + 1 :]
    if op == "truncate":
        return value[:i]
    return value[:i] + data.draw(st.sampled_from([b"=", b"&", b"%", b"+"])) + value[i + 1 :]


def sign_mutant(name: str, body: bytes) -> dict[str, str]:
    if name == "twilio_strict":
        return dict(MUTANTS[name].sign(URL, body))
    return sign(name, body)


forms = st.lists(
    st.tuples(
        st.sampled_from(["CallSid", "From", "To", "Body", "NumMedia", "X_1"]), st.text(max_size=12)
    ),
    max_size=6,
).map(lambda pairs: urlencode([("From", "+1"), ("To", "+2"), ("Body", "b"), *pairs]).encode())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(MUTANTS)), data=st.data())
def test_what_still_verifies_after_mutation_is_what_was_signed(
    name: str, data: st.DataObject
) -> None:
    scheme = MUTANTS[name]
    bodies = [st.just(TWILIO_FORM), forms]
    if name != "twilio_strict":
        bodies.append(st.binary(max_size=80))
    body = data.draw(st.one_of(bodies))
    headers = sign_mutant(name, body)
    mbody, mheaders = body, dict(headers)
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(["body", "delete", *READ[name]]))
        if target == "body":
            mbody = mutate_bytes(data, mbody)
        elif target == "delete":
            mheaders.pop(data.draw(st.sampled_from(READ[name])), None)
        elif target in mheaders:
            mheaders[target] = mutate_text(data, mheaders[target])
    outcome: Any
    try:
        if name.startswith("twilio"):
            outcome = scheme.verify(mbody, mheaders, url=URL)
        else:
            outcome = scheme.verify(mbody, mheaders)
    except WebhookError as exc:  # typed, named, and nothing else
        outcome = exc
    if isinstance(outcome, WebhookError):
        assert outcome.reason and outcome.scheme == scheme.name
        return
    assert outcome.body == mbody
    assert signed_content(name, mbody, mheaders) == signed_content(name, body, headers)
    sig = SIG_HEADER[name]
    assert signature_form(name, mheaders[sig]) == signature_form(name, headers[sig])
    for header in READ[name]:
        if header != sig:  # the other headers are signed content, exactly
            assert mheaders.get(header) == headers.get(header), header
    if name == "twilio_strict":
        assert set(outcome.form()) >= EXPECT


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_what_still_verifies_after_mutating_a_bearer_header_is_the_secret(
    data: st.DataObject,
) -> None:
    cron = BearerSecret(secrets=["cron-s3cret-new", "cron-s3cret-old"], metrics=False)
    value = data.draw(st.sampled_from(["Bearer cron-s3cret-new", "Bearer cron-s3cret-old"]))
    mutated = value
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = mutate_text(data, mutated)
    reason = None
    try:
        cron.verify({"Authorization": mutated})
    except WebhookError as exc:
        reason = exc.reason
    if reason is not None:
        assert reason in ("missing_header", "malformed_header", "signature_mismatch")
        return
    kind, _, token = mutated.strip(OWS).partition(" ")
    # Only OWS, the scheme word's case and extra spaces before the token may differ.
    assert kind.lower() == "bearer"
    assert token.strip(OWS) == value.partition(" ")[2]
