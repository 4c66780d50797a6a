from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest
from prometheus_client import CollectorRegistry

import opskit.webhooks as wh
from opskit.testing import ManualClock
from opskit.webhooks import (
    BearerSecret,
    GitHub,
    HMACScheme,
    MalformedBody,
    MalformedHeader,
    MissingHeader,
    Shopify,
    SignatureMismatch,
    Slack,
    StandardWebhooks,
    Stripe,
    TimestampOutOfTolerance,
    Twilio,
    VerifiedWebhook,
    WebhookError,
)
from webhooks._wh import (
    GH_BODY,
    GH_SECRET,
    GH_SIG,
    SLACK_BODY,
    SLACK_SECRET,
    SLACK_SIG,
    SLACK_TS,
    SW_BODY,
    SW_ID,
    SW_SECRET,
    SW_SIG,
    SW_TS,
    TW_JSON_BODY,
    TW_JSON_HASH,
    TW_JSON_SIG,
    TW_PARAMS,
    TW_SIG,
    TW_SIG_80,
    TW_SIG_443,
    TW_TOKEN,
    TW_URL,
)


def at(ts: float) -> ManualClock:
    return ManualClock(wall_start=ts)


def test_public_api_is_pinned() -> None:
    expected = {
        "StandardWebhooks", "Stripe", "GitHub", "Slack", "Twilio", "Shopify", "HMACScheme",
        "VerifiedWebhook", "BearerSecret", "MemoryReplayStore", "RedisReplayStore",
        "WebhookError", "MissingHeader", "MalformedHeader", "SignatureMismatch",
        "TimestampOutOfTolerance", "ReplayDetected", "PayloadTooLarge",
    }  # fmt: skip
    assert expected <= set(wh.__all__)
    for name in wh.__all__:
        assert getattr(wh, name) is not None
    for err in ("MissingHeader", "MalformedHeader", "SignatureMismatch", "PayloadTooLarge",
                "TimestampOutOfTolerance", "ReplayDetected", "MalformedBody"):  # fmt: skip
        assert issubclass(getattr(wh, err), WebhookError)


# ------------------------------------------------------------------ published vectors


def sw_headers(prefix: str = "webhook", sig: str = SW_SIG) -> dict[str, str]:
    return {f"{prefix}-id": SW_ID, f"{prefix}-timestamp": str(SW_TS), f"{prefix}-signature": sig}


@pytest.mark.parametrize("prefix", ["webhook", "svix", "Webhook", "SVIX"])
def test_standard_webhooks_vector(prefix: str) -> None:
    scheme = StandardWebhooks(secrets=[SW_SECRET], clock=at(SW_TS), metrics=False)
    event = scheme.verify(SW_BODY, sw_headers(prefix))
    assert (event.scheme, event.id, event.timestamp) == ("standard_webhooks", SW_ID, SW_TS)
    assert event.body == SW_BODY and event.json() == {"test": 2432232314}


@pytest.mark.parametrize(
    "secret",
    [SW_SECRET, SW_SECRET[len("whsec_") :], SW_SECRET.rstrip("="),
     base64.b64decode(SW_SECRET[6:] + "==")],
)  # fmt: skip
def test_standard_webhooks_secret_forms(secret: str | bytes) -> None:
    scheme = StandardWebhooks(secrets=[secret], clock=at(SW_TS), metrics=False)
    assert scheme.verify(SW_BODY, sw_headers()).id == SW_ID
    assert scheme.sign(SW_ID, SW_TS, SW_BODY)["webhook-signature"] == SW_SIG


def test_standard_webhooks_unpadded_secret_is_padding_tolerant() -> None:
    raw = b"\x01\x02\x03\x04\x05"  # base64 needs padding: AQIDBAU=
    unpadded = "whsec_" + base64.b64encode(raw).decode().rstrip("=")
    signer = StandardWebhooks(secrets=[raw], metrics=False, clock=at(100))
    verifier = StandardWebhooks(secrets=[unpadded], metrics=False, clock=at(100))
    assert verifier.verify(b"x", signer.sign("m", 100, b"x")).body == b"x"


def test_standard_webhooks_several_entries_and_other_versions() -> None:
    scheme = StandardWebhooks(secrets=[SW_SECRET], clock=at(SW_TS), metrics=False)
    sig = f"v1a,AAAA nocomma v1,AAAA= {SW_SIG} v2,xyz"
    assert scheme.verify(SW_BODY, sw_headers(sig=sig)).id == SW_ID
    with pytest.raises(SignatureMismatch):
        scheme.verify(SW_BODY, sw_headers(sig="v2," + SW_SIG[3:]))


def test_github_vector() -> None:
    gh = GitHub(secrets=[GH_SECRET], metrics=False)
    event = gh.verify(GH_BODY, {"X-Hub-Signature-256": GH_SIG, "X-GitHub-Delivery": "d-1"})
    assert (event.scheme, event.id, event.timestamp) == ("github", "d-1", None)
    assert gh.sign(GH_BODY) == {"X-Hub-Signature-256": GH_SIG}
    # upper-case hex from some proxies still compares
    assert gh.verify(GH_BODY, {"x-hub-signature-256": "sha256=" + GH_SIG[7:].upper()})
    with pytest.raises(MalformedHeader):
        gh.verify(GH_BODY, {"X-Hub-Signature-256": GH_SIG[7:]})
    with pytest.raises(MissingHeader):  # sha1 X-Hub-Signature is never a fallback
        gh.verify(GH_BODY, {"X-Hub-Signature": "sha1=" + "0" * 40})


def test_slack_vector() -> None:
    slack = Slack(secrets=[SLACK_SECRET], clock=at(SLACK_TS + 60), metrics=False)
    headers = {"X-Slack-Signature": SLACK_SIG, "X-Slack-Request-Timestamp": str(SLACK_TS)}
    event = slack.verify(SLACK_BODY, headers)
    assert event.timestamp == SLACK_TS and event.form()["command"] == ["/webhook-collect"]
    assert slack.sign(SLACK_BODY, SLACK_TS) == headers


def test_twilio_form_vectors_with_and_without_ports() -> None:
    tw = Twilio(auth_tokens=[TW_TOKEN], metrics=False)
    body = urlencode(TW_PARAMS).encode()
    for url, sig in [
        (TW_URL, TW_SIG),
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", TW_SIG_443),
        ("http://mycompany.com:80/myapp.php?foo=1&bar=2", TW_SIG_80),
    ]:
        assert tw.verify(body, {"X-Twilio-Signature": sig}, url=url).url == url
    # Twilio signed the URL without the port; the server sees it with one (and back).
    assert tw.verify(body, {"X-Twilio-Signature": TW_SIG}, url=TW_URL.replace(".com", ".com:443"))
    assert tw.verify(body, {"X-Twilio-Signature": TW_SIG_443}, url=TW_URL)
    assert tw.sign(TW_URL, body) == {"X-Twilio-Signature": TW_SIG}
    assert tw.sign(TW_URL, TW_PARAMS) == {"X-Twilio-Signature": TW_SIG}
    with pytest.raises(SignatureMismatch):
        tw.verify(body, {"X-Twilio-Signature": TW_SIG}, url=TW_URL.replace("foo=1", "foo=2"))
    with pytest.raises(SignatureMismatch):
        tw.verify(body + b"&Extra=1", {"X-Twilio-Signature": TW_SIG}, url=TW_URL)


def test_twilio_json_body_sha256_vector() -> None:
    tw = Twilio(auth_tokens=[TW_TOKEN], metrics=False)
    url = f"{TW_URL}&bodySHA256={TW_JSON_HASH}"
    assert tw.json_url(TW_URL, TW_JSON_BODY) == url
    event = tw.verify(TW_JSON_BODY, {"X-Twilio-Signature": TW_JSON_SIG}, url=url)
    assert event.json() == {"property": "value", "boolean": True}
    assert tw.sign(url) == {"X-Twilio-Signature": TW_JSON_SIG}
    with pytest.raises(SignatureMismatch):  # the body no longer hashes to bodySHA256
        tw.verify(TW_JSON_BODY + b" ", {"X-Twilio-Signature": TW_JSON_SIG}, url=url)


def test_twilio_multi_value_params_sorted_and_deduplicated() -> None:
    tw = Twilio(auth_tokens=[TW_TOKEN], metrics=False)
    body = b"b=2&a=z&a=y&a=z&Empty="
    expected = "https://x.test/t" + "Empty" + "" + "a" + "y" + "a" + "z" + "b" + "2"
    sig = base64.b64encode(hmac.new(b"12345", expected.encode(), hashlib.sha1).digest()).decode()
    assert tw.verify(body, {"X-Twilio-Signature": sig}, url="https://x.test/t")
    assert (
        tw.sign("https://x.test/t", {"a": ["z", "y"], "b": "2", "Empty": ""})["X-Twilio-Signature"]
        == sig
    )


def test_twilio_sha256_shared_key_signatures() -> None:
    tw = Twilio(auth_tokens=[TW_TOKEN], metrics=False)
    headers = tw.sign(TW_URL, TW_PARAMS, algorithm="HMAC_SHA256")
    assert "algorithm=HMAC_SHA256" in headers["X-Twilio-Webhooks-Signature-Settings"]
    assert tw.verify(urlencode(TW_PARAMS).encode(), headers, url=TW_URL)
    headers["X-Twilio-Webhooks-Signature-Settings"] = "key=k,algorithm=HMAC_MD5"
    with pytest.raises(MalformedHeader):
        tw.verify(urlencode(TW_PARAMS).encode(), headers, url=TW_URL)


def test_twilio_needs_a_url() -> None:
    with pytest.raises(TypeError, match="url="):
        Twilio(auth_tokens=[TW_TOKEN], metrics=False).verify(b"", {"X-Twilio-Signature": "x"})


def test_shopify_and_generic_hmac() -> None:
    shop = Shopify(secrets=["shh"], metrics=False)
    sig = base64.b64encode(hmac.new(b"shh", b'{"id":1}', hashlib.sha256).digest()).decode()
    headers = shop.sign(b'{"id":1}', webhook_id="w-1")
    assert headers == {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Webhook-Id": "w-1"}
    assert shop.verify(b'{"id":1}', headers).id == "w-1"
    rz = HMACScheme("razorpay", header="X-Razorpay-Signature", secrets=["k"])
    hexsig = hmac.new(b"k", b"payload", hashlib.sha256).hexdigest()
    assert rz.verify(b"payload", {"x-razorpay-signature": hexsig}).scheme == "razorpay"
    sha512 = HMACScheme(
        "x", header="X-Sig", secrets=[b"k"], algorithm="sha512", encoding="base64", prefix="v="
    )
    sig512 = base64.b64encode(hmac.new(b"k", b"p", hashlib.sha512).digest()).decode()
    assert sha512.sign(b"p") == {"X-Sig": "v=" + sig512}
    assert sha512.verify(b"p", {"X-Sig": "v=" + sig512})
    with pytest.raises(ValueError, match="algorithm"):
        HMACScheme("x", header="X", secrets=["k"], algorithm="md5")


def test_stripe_sign_verify_and_v0_ignored() -> None:
    clock = at(1_700_000_000)
    stripe = Stripe(secrets=["whsec_test"], clock=clock, metrics=False)
    body = b'{"id": "evt_1", "object": "event"}'
    header = stripe.sign(body)["Stripe-Signature"]
    ts, v1 = header.split(",")
    assert ts == "t=1700000000"
    mac = hmac.new(b"whsec_test", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert v1 == "v1=" + mac
    assert stripe.verify(body, {"Stripe-Signature": header}).timestamp == 1700000000
    # Test mode's v0 is ignored; a v0-only header is not a downgrade path.
    with pytest.raises(SignatureMismatch):
        stripe.verify(body, {"Stripe-Signature": f"t=1700000000,v0={mac}"})
    both = f"t=1700000000, v0=deadbeef, v1=00, v1={mac}"
    assert stripe.verify(body, {"stripe-signature": both}).json()["id"] == "evt_1"


# ------------------------------------------------------------------ time window


@pytest.mark.parametrize(
    ("scheme", "sign"),
    [
        (lambda c, **kw: Stripe(secrets=["whsec_a"], clock=c, metrics=False, **kw),
         lambda s, ts: s.sign(b"{}", ts)),
        (lambda c, **kw: StandardWebhooks(secrets=[SW_SECRET], clock=c, metrics=False, **kw),
         lambda s, ts: s.sign("m1", ts, b"{}")),
        (lambda c, **kw: Slack(secrets=["s"], clock=c, metrics=False, **kw),
         lambda s, ts: s.sign(b"{}", ts)),
    ],
)  # fmt: skip
def test_timestamp_window_is_two_sided(scheme: object, sign: object) -> None:
    clock = at(1_700_000_000)
    s = scheme(clock)  # type: ignore[operator]
    now = 1_700_000_000
    for ts in (now - 300, now, now + 300):
        assert s.verify(b"{}", sign(s, ts)).timestamp == ts  # type: ignore[operator]
    for ts, direction in ((now - 301, "old"), (now + 301, "new")):
        with pytest.raises(TimestampOutOfTolerance) as info:
            s.verify(b"{}", sign(s, ts))  # type: ignore[operator]
        assert info.value.direction == direction and info.value.reason
        assert info.value.status == 401
    lax = scheme(clock, tolerance=None)  # type: ignore[operator]
    assert lax.verify(b"{}", sign(lax, 1)).timestamp == 1  # type: ignore[operator]
    with pytest.raises(ValueError, match="tolerance"):
        scheme(clock, tolerance=0)  # type: ignore[operator]


def test_stale_signature_is_reported_as_mismatch_before_time() -> None:
    # A forged message gets "signature_mismatch", whatever its timestamp.
    stripe = Stripe(secrets=["whsec_a"], clock=at(1_700_000_000), metrics=False)
    with pytest.raises(SignatureMismatch):
        stripe.verify(b"{}", {"Stripe-Signature": "t=1,v1=" + "0" * 64})


# ------------------------------------------------------------------ rotation


def test_rotation_old_and_new_verify_removed_does_not() -> None:
    clock = at(1_700_000_000)
    old = Stripe(secrets=["whsec_old"], clock=clock, metrics=False)
    new = Stripe(secrets=["whsec_new"], clock=clock, metrics=False)
    both = Stripe(secrets=["whsec_new", "whsec_old"], clock=clock, metrics=False)
    only_new = Stripe(secrets=["whsec_new"], clock=clock, metrics=False)
    assert both.verify(b"{}", old.sign(b"{}"))
    assert both.verify(b"{}", new.sign(b"{}"))
    with pytest.raises(SignatureMismatch):
        only_new.verify(b"{}", old.sign(b"{}"))
    # A sender signing with both during its own rotation is accepted by either side.
    dual = both.sign(b"{}", all_secrets=True)
    assert dual["Stripe-Signature"].count("v1=") == 2
    assert old.verify(b"{}", dual) and only_new.verify(b"{}", dual)
    gh = GitHub(secrets=["new", "old"], metrics=False)
    assert gh.verify(b"x", GitHub(secrets=["old"], metrics=False).sign(b"x"))
    with pytest.raises(SignatureMismatch):
        GitHub(secrets=["new"], metrics=False).verify(
            b"x", GitHub(secrets=["old"], metrics=False).sign(b"x")
        )


# ------------------------------------------------------------------ limits and errors


def test_signature_count_and_header_size_limits() -> None:
    sw = StandardWebhooks(secrets=[SW_SECRET], clock=at(SW_TS), metrics=False)
    sixteen = " ".join(["v1,AAAA"] * 15 + [SW_SIG])
    assert sw.verify(SW_BODY, sw_headers(sig=sixteen))
    with pytest.raises(MalformedHeader, match="more than 16"):
        sw.verify(SW_BODY, sw_headers(sig=" ".join(["v1,AAAA"] * 16 + [SW_SIG])))
    with pytest.raises(MalformedHeader, match="8192"):
        sw.verify(SW_BODY, sw_headers(sig=SW_SIG + " " * 8200))
    stripe = Stripe(secrets=["whsec_a"], clock=at(1), metrics=False)
    with pytest.raises(MalformedHeader):
        stripe.verify(b"", {"Stripe-Signature": "t=1," + ",".join(["v1=00"] * 17)})
    with pytest.raises(MalformedHeader):
        stripe.verify(b"", {"Stripe-Signature": "t=1,t=2,v1=00"})
    with pytest.raises(MalformedHeader):
        stripe.verify(b"", {"Stripe-Signature": "v1=00"})
    with pytest.raises(MalformedHeader):
        stripe.verify(b"", {"Stripe-Signature": "t=\uff11\uff12,v1=00"})  # non-ASCII digits


def test_missing_headers_and_reasons() -> None:
    sw = StandardWebhooks(secrets=[SW_SECRET], clock=at(SW_TS), metrics=False)
    for drop in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        headers = sw_headers()
        headers[drop] = ""
        with pytest.raises(MissingHeader) as info:
            sw.verify(SW_BODY, headers)
        assert info.value.reason == "missing_header" and info.value.status == 400
        assert info.value.header == drop
    with pytest.raises(MalformedHeader) as bad:
        sw.verify(SW_BODY, {**sw_headers(), "webhook-timestamp": "12a"})
    assert bad.value.reason == "malformed_header"
    with pytest.raises(SignatureMismatch) as mis:
        sw.verify(SW_BODY + b" ", sw_headers())
    assert (mis.value.reason, mis.value.status, mis.value.scheme) == (
        "signature_mismatch", 401, "standard_webhooks")  # fmt: skip


def test_body_must_be_bytes() -> None:
    gh = GitHub(secrets=[GH_SECRET], metrics=False)
    with pytest.raises(TypeError, match="raw body"):
        gh.verify(GH_BODY.decode(), {"X-Hub-Signature-256": GH_SIG})  # type: ignore[arg-type]
    assert gh.verify(bytearray(GH_BODY), {"X-Hub-Signature-256": GH_SIG}).body == GH_BODY


def test_headers_of_any_shape() -> None:
    from opskit._core.http import Headers

    gh = GitHub(secrets=[GH_SECRET], metrics=False)
    for headers in (
        {"X-HUB-SIGNATURE-256": GH_SIG},
        {b"x-hub-signature-256": GH_SIG.encode()},
        [("X-Hub-Signature-256", GH_SIG)],
        Headers([("x-hub-signature-256", GH_SIG)]),
    ):
        assert gh.verify(GH_BODY, headers).body == GH_BODY
    with pytest.raises(MalformedHeader):
        gh.verify(GH_BODY, {"X-Hub-Signature-256": 12})


def test_nothing_secret_in_messages_or_reprs() -> None:
    secret = "whsec_TOPSECRETvalue"
    stripe = Stripe(secrets=[secret], clock=at(1_700_000_000))
    header = stripe.sign(b"{'card': 4242}")["Stripe-Signature"]
    sig = header.split("v1=")[1]
    texts = [repr(stripe), str(stripe)]
    for body, h in [(b"{'card': 4242} ", header), (b"x", "t=1,v1=" + sig)]:
        with pytest.raises(WebhookError) as info:
            stripe.verify(body, {"Stripe-Signature": h})
        texts += [str(info.value), repr(info.value)]
    texts.append(repr(stripe.verify(b"{'card': 4242}", {"Stripe-Signature": header})))
    bearer = BearerSecret(secrets=["cron-secret"])
    texts.append(repr(bearer))
    for text in texts:
        assert "TOPSECRET" not in text and sig not in text and "4242" not in text
        assert "cron-secret" not in text


def test_verified_webhook_json_errors_are_webhook_errors() -> None:
    event = VerifiedWebhook("x", None, None, b"not json")
    with pytest.raises(MalformedBody) as info:
        event.json()
    assert isinstance(info.value, ValueError) and info.value.reason == "malformed_body"
    assert event == VerifiedWebhook("x", None, None, b"not json")
    assert "not json" not in repr(event)


def test_bearer_secret() -> None:
    bearer = BearerSecret(secrets=["new-secret", "old-secret"])
    assert bearer.verify({"Authorization": "Bearer old-secret"}) is None
    assert bearer.verify(bearer.sign()) is None
    with pytest.raises(SignatureMismatch):
        bearer.verify({"Authorization": "Bearer new-secre"})
    with pytest.raises(MissingHeader) as missing:
        bearer.verify({})
    assert missing.value.status == 401
    with pytest.raises(MalformedHeader):
        bearer.verify({"Authorization": "Basic abc"})


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WH_SECRETS", " whsec_new , whsec_old ,")
    stripe = Stripe.from_env("WH_SECRETS", clock=at(1_700_000_000), metrics=False)
    assert stripe.verify(
        b"1", Stripe(secrets=["whsec_old"], metrics=False).sign(b"1", 1_700_000_000)
    )
    monkeypatch.setenv("TW", "12345")
    tw = Twilio.from_env("TW", metrics=False)
    assert tw.verify(urlencode(TW_PARAMS).encode(), {"X-Twilio-Signature": TW_SIG}, url=TW_URL)
    assert BearerSecret.from_env("TW").verify({"authorization": "bearer 12345"}) is None
    hm = HMACScheme.from_env("TW", name="n", header="X-S", metrics=False)
    assert hm.verify(b"b", hm.sign(b"b"))
    monkeypatch.setenv("SW", SW_SECRET)
    sw = StandardWebhooks.from_env("SW", clock=at(SW_TS), metrics=False)
    assert sw.verify(SW_BODY, sw_headers()).id == SW_ID
    for cls in (GitHub, Slack, Shopify):
        assert cls.from_env("WH_SECRETS", metrics=False).verify(
            b"b",
            cls(secrets=["whsec_old"], metrics=False).sign(b"b"),
        )
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ValueError, match="NOPE is not set"):
        GitHub.from_env("NOPE")
    monkeypatch.setenv("EMPTY", " , ")
    with pytest.raises(ValueError, match="no secret"):
        GitHub.from_env("EMPTY")
    with pytest.raises(ValueError, match="empty"):
        GitHub(secrets=[])


def test_metrics_counted_per_scheme_and_result() -> None:
    registry = CollectorRegistry()
    gh = GitHub(secrets=[GH_SECRET], registry=registry)
    gh2 = GitHub(secrets=[GH_SECRET], registry=registry)  # same label set: summed, not duplicated
    slack = Slack(secrets=["s"], registry=registry, name="slack-app")
    gh.verify(GH_BODY, {"X-Hub-Signature-256": GH_SIG})
    gh2.verify(GH_BODY, {"X-Hub-Signature-256": GH_SIG})
    for _ in range(3):
        with pytest.raises(SignatureMismatch):
            gh.verify(b"other", {"X-Hub-Signature-256": GH_SIG})
    with pytest.raises(MissingHeader):
        slack.verify(b"", {})

    def sample(scheme: str, result: str) -> float | None:
        return registry.get_sample_value(
            "opskit_webhook_verifications_total", {"scheme": scheme, "result": result}
        )

    assert sample("github", "ok") == 2
    assert sample("github", "signature_mismatch") == 3
    assert sample("slack-app", "missing_header") == 1
    assert gh.counts == {"ok": 1, "signature_mismatch": 3}
    text = json.dumps([m.name for m in registry.collect()])
    assert "opskit_webhook_verifications" in text


def test_fast_paths_agree_with_the_full_parse() -> None:
    # A correctly signed but non-ASCII "digit" timestamp is malformed on every path.
    key = b"whsec_a"
    for ts_text in ("\u00b2", "\u0661\u0662"):
        mac = hmac.new(key, ts_text.encode() + b".{}", hashlib.sha256).hexdigest()
        stripe = Stripe(secrets=["whsec_a"], clock=at(1), metrics=False)
        with pytest.raises(MalformedHeader):
            stripe.verify(b"{}", {"Stripe-Signature": f"t={ts_text},v1={mac}"})
        raw = base64.b64decode(SW_SECRET[6:] + "==")
        b64 = base64.b64encode(
            hmac.new(raw, b"m." + ts_text.encode() + b".{}", hashlib.sha256).digest()
        ).decode()
        sw = StandardWebhooks(secrets=[SW_SECRET], clock=at(1), metrics=False)
        with pytest.raises(MalformedHeader):
            sw.verify(b"{}", {"webhook-id": "m", "webhook-timestamp": ts_text,
                              "webhook-signature": "v1," + b64})  # fmt: skip
    # Whitespace the fast path does not take still verifies through the full parse.
    stripe = Stripe(secrets=["whsec_a"], clock=at(1_700_000_000), metrics=False)
    header = stripe.sign(b"{}")["Stripe-Signature"].replace(",", " , ") + " "
    assert stripe.verify(b"{}", {"Stripe-Signature": header})
    sw = StandardWebhooks(secrets=[SW_SECRET], clock=at(SW_TS), metrics=False)
    assert sw.verify(SW_BODY, {**sw_headers(), "webhook-signature": f"  {SW_SIG}  "})
