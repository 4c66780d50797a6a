"""Verify a 1 KiB payload: opskit vs the official SDKs and a bare HMAC.

Peers: ``standardwebhooks.Webhook.verify`` (json_parse=False, so both sides
only verify), ``stripe.WebhookSignature.verify_header``, twilio's
``RequestValidator.validate`` (given the parsed form dict, as frameworks hand it;
opskit parses the raw body itself), and ``hmac.new(...).digest()`` +
``hmac.compare_digest``. Targets: >= 2.5x faster than the SDK for the same
scheme, within 2x of the bare HMAC. Prints ns/op and ratios; about 20 s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

import standardwebhooks
import stripe
from twilio.request_validator import RequestValidator

from opskit._core.clock import MONOTONIC
from opskit.webhooks import StandardWebhooks, Stripe, Twilio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = json.dumps({"id": "evt_1", "data": "x" * 997}).encode()
assert len(BODY) == 1024


def bench(fn: Callable[[], object], seconds: float = 1.5) -> float:
    """Best-of-5 ns per call."""
    n = 1
    while True:  # calibrate
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 > seconds / 10:
            break
        n *= 2
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e9


def main() -> None:
    now = int(MONOTONIC.time())
    results: dict[str, float] = {}

    # Bare HMAC-SHA256 over the same 1 KiB signed content, plus a constant-time compare.
    key = b"0123456789abcdef0123456789abcdef"
    signed = b"msg_1." + str(now).encode() + b"." + BODY
    good = hmac.new(key, signed, hashlib.sha256).digest()
    results["bare hmac.new+compare_digest"] = bench(
        lambda: hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), good)
    )

    # Standard Webhooks.
    ours_sw = StandardWebhooks(secrets=[SECRET], metrics=False)
    sw_headers = ours_sw.sign("msg_1", now, BODY)
    ref_sw = standardwebhooks.Webhook(SECRET)
    assert ref_sw.verify(BODY, sw_headers, json_parse=False) is None
    ours_sw.verify(BODY, sw_headers)
    results["opskit StandardWebhooks.verify"] = bench(lambda: ours_sw.verify(BODY, sw_headers))
    results["standardwebhooks Webhook.verify"] = bench(
        lambda: ref_sw.verify(BODY, sw_headers, json_parse=False)
    )

    # Stripe.
    ours_st = Stripe(secrets=["whsec_bench"], metrics=False)
    st_header = stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), "whsec_bench", timestamp=now
    )
    st_headers = {"Stripe-Signature": st_header}
    ours_st.verify(BODY, st_headers)
    results["opskit Stripe.verify"] = bench(lambda: ours_st.verify(BODY, st_headers))
    results["stripe WebhookSignature.verify_header"] = bench(
        lambda: stripe.WebhookSignature.verify_header(BODY, st_header, "whsec_bench", 300)
    )

    # Twilio: a 1 KiB form body.
    params = {f"Param{i:02d}": "v" * 26 for i in range(30)}
    form = urlencode(params).encode()[:1024]
    form_params = dict(parse_qsl(form.decode(), keep_blank_values=True))
    url = "https://example.com/twilio/sms?account=1"
    ours_tw = Twilio(auth_tokens=["twilio-token"], metrics=False)
    tw_sig = RequestValidator("twilio-token").compute_signature(url, form_params)
    tw_headers = {"X-Twilio-Signature": tw_sig}
    ours_tw.verify(form, tw_headers, url=url)
    validator = RequestValidator("twilio-token")
    assert validator.validate(url, form_params, tw_sig)
    results["opskit Twilio.verify (parses body)"] = bench(
        lambda: ours_tw.verify(form, tw_headers, url=url)
    )
    results["twilio RequestValidator.validate"] = bench(
        lambda: validator.validate(url, form_params, tw_sig)
    )

    width = max(map(len, results))
    print(f"verifying a 1 KiB payload (python {platform.python_version()}, best of 5)")
    for name, ns in results.items():
        print(f"  {name:<{width}}  {ns:>9,.0f} ns/op")
    bare = results["bare hmac.new+compare_digest"]
    print("ratios (SDK / opskit: higher is better; opskit / bare HMAC: lower is better)")
    pairs = [
        ("Standard Webhooks", "standardwebhooks Webhook.verify", "opskit StandardWebhooks.verify"),
        ("Stripe", "stripe WebhookSignature.verify_header", "opskit Stripe.verify"),
        ("Twilio", "twilio RequestValidator.validate", "opskit Twilio.verify (parses body)"),
    ]
    for label, sdk, ours in pairs:
        speedup = results[sdk] / results[ours]
        vs_bare = results[ours] / bare
        print(
            f"  {label:<18} {speedup:5.2f}x faster than the SDK "
            f"[{'ok' if speedup >= 2.5 else 'MISS'} >=2.5x]   "
            f"{vs_bare:5.2f}x bare HMAC [{'ok' if vs_bare <= 2 else 'MISS'} <=2x]"
        )


if __name__ == "__main__":
    main()
