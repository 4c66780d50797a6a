"""Interop with the official SDKs, both ways: they accept what opskit signs, and back."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest
import standardwebhooks
import stripe
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from opskit._core.clock import MONOTONIC
from opskit.webhooks import SignatureMismatch, StandardWebhooks, Stripe, Twilio
from webhooks._wh import SW_SECRET

BODY = b'{"id": "evt_123", "type": "payment_intent.succeeded", "data": {"amount": 1999}}'


def now() -> int:
    # Both SDKs read the real wall clock; opskit uses its real clock here too.
    return int(MONOTONIC.time())


def test_stripe_sdk_accepts_opskit_signatures() -> None:
    scheme = Stripe(secrets=["whsec_interop"], metrics=False)
    header = scheme.sign(BODY)["Stripe-Signature"]
    assert stripe.WebhookSignature.verify_header(BODY, header, "whsec_interop", tolerance=300)
    event = stripe.Webhook.construct_event(BODY, header, "whsec_interop")
    assert event["id"] == "evt_123"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(BODY, header, "whsec_other", tolerance=300)


def test_opskit_accepts_stripe_sdk_signatures() -> None:
    header = stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), "whsec_interop", timestamp=now()
    )
    assert Stripe(secrets=["whsec_interop"], metrics=False).verify(
        BODY, {"Stripe-Signature": header}
    )
    with pytest.raises(SignatureMismatch):
        Stripe(secrets=["whsec_other"], metrics=False).verify(BODY, {"Stripe-Signature": header})


def test_standardwebhooks_sdk_accepts_opskit_signatures() -> None:
    headers = StandardWebhooks(secrets=[SW_SECRET], metrics=False).sign("msg_1", None, BODY)
    assert standardwebhooks.Webhook(SW_SECRET).verify(BODY, headers)["id"] == "evt_123"
    svix = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + "A" * 32).verify(BODY, headers)
    assert StandardWebhooks(secrets=[SW_SECRET], metrics=False).verify(BODY, svix).id == "msg_1"


def test_opskit_accepts_standardwebhooks_sdk_signatures() -> None:
    ts = now()
    ref = standardwebhooks.Webhook(SW_SECRET)
    sig = ref.sign("msg_2", datetime.fromtimestamp(ts, tz=timezone.utc), BODY.decode())
    headers = {"webhook-id": "msg_2", "webhook-timestamp": str(ts), "webhook-signature": sig}
    event = StandardWebhooks(secrets=[SW_SECRET], metrics=False).verify(BODY, headers)
    assert (event.id, event.timestamp, event.json()["type"]) == (
        "msg_2", ts, "payment_intent.succeeded")  # fmt: skip


FORM = [("To", "+18005551212"), ("Body", "hello wörld & more"), ("MediaUrl", "b"),
        ("MediaUrl", "a"), ("Empty", "")]  # fmt: skip


@pytest.mark.parametrize(
    "url",
    ["https://example.com/sms", "https://example.com:443/sms?x=1",
     "http://example.com/sms?a=b&c=d", "https://example.com:8443/sms"],
)  # fmt: skip
def test_twilio_validator_accepts_opskit_signatures(url: str) -> None:
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    body = urlencode(FORM).encode()
    sig = tw.sign(url, body)["X-Twilio-Signature"]
    assert RequestValidator("tok").validate(url, MultiDict(FORM), sig)
    assert not RequestValidator("other").validate(url, MultiDict(FORM), sig)


@pytest.mark.parametrize(
    "url", ["https://example.com/sms", "https://example.com:443/sms?x=1", "http://h:80/p"]
)
def test_opskit_accepts_twilio_validator_signatures(url: str) -> None:
    sig = RequestValidator("tok").compute_signature(url, MultiDict(FORM))
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    assert tw.verify(urlencode(FORM).encode(), {"X-Twilio-Signature": sig}, url=url)


def test_twilio_json_interop_both_ways() -> None:
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    url = tw.json_url("https://example.com/status?x=1", BODY)
    sig = tw.sign(url)["X-Twilio-Signature"]
    assert RequestValidator("tok").validate(url, BODY.decode(), sig)
    ref_sig = RequestValidator("tok").compute_signature(url, {})
    assert tw.verify(BODY, {"X-Twilio-Signature": ref_sig}, url=url).json()["id"] == "evt_123"


def test_twilio_sha256_interop() -> None:
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    headers = tw.sign("https://example.com/sms", dict(FORM[:2]), algorithm="HMAC_SHA256")
    assert RequestValidator("tok").validate(
        "https://example.com/sms", dict(FORM[:2]), headers["X-Twilio-Signature"], "HMAC_SHA256"
    )
