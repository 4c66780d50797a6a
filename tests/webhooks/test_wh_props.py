"""Properties: tampering never verifies; arbitrary headers only raise WebhookError."""

from __future__ import annotations

from typing import Any

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

        def signed(b: bytes) -> tuple[str, bool]:
            pairs = parse_qsl(b.decode("utf-8", "replace"), keep_blank_values=True)
            # (what is signed, whether a body that is not blank carries no parameter)
            return "".join(k + v for k, v in sorted(set(pairs))), bool(b.strip()) and not pairs

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
