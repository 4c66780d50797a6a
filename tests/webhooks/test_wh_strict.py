"""Strict parsing (issue 14, part 5): each mutated request the fuzzing found verified, now.

Timestamps are ASCII digits and nothing else; around a signature header only
HTTP's optional whitespace (SP, HTAB) is dropped; hex signatures still verify in
either letter case (the same MAC). Twilio's form signatures are malleable (names
and values are signed run together): ``expect_params`` closes the shifts found.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

import opskit.webhooks as wh
from opskit.testing import ManualClock
from opskit.webhooks import (
    BearerSecret,
    GitHub,
    HMACScheme,
    MalformedBody,
    MalformedForm,
    MalformedHeader,
    Shopify,
    SignatureMismatch,
    Slack,
    StandardWebhooks,
    Stripe,
    Twilio,
    WebhookError,
)
from webhooks._wh import GH_BODY, GH_SECRET, GH_SIG, SLACK_BODY, SW_SECRET

TS = 1796143786  # the timestamp of the mutated Slack requests in the issue
CLOCK = ManualClock(wall_start=TS)


def slack() -> Slack:
    return Slack(secrets=["slack-secret"], clock=CLOCK, metrics=False)


def slack_headers() -> dict[str, str]:
    return slack().sign(SLACK_BODY, TS)


# ------------------------------------------------------------------ timestamps


@pytest.mark.parametrize(
    "ts",
    ["\x1f1796143786", "1796143786\x85", "\t1796143786", "1796143786\t", " 1796143786",
     "1796143786 ", "1796143786\x0c", "\u00a01796143786", "179614378\u0666", "+1796143786",
     "1796143786\n", "\x001796143786"],
)  # fmt: skip
def test_a_slack_timestamp_is_ascii_digits_only(ts: str) -> None:
    headers = slack_headers()
    headers["X-Slack-Request-Timestamp"] = ts
    with pytest.raises(MalformedHeader) as err:
        slack().verify(SLACK_BODY, headers)
    assert err.value.reason == "malformed_header"
    assert err.value.header == "X-Slack-Request-Timestamp"


@pytest.mark.parametrize("ts", ["\t1796143786", "1796143786 ", "1796143786\x85", "\x1f1796143786"])
def test_a_standard_webhooks_timestamp_is_ascii_digits_only(ts: str) -> None:
    sw = StandardWebhooks(secrets=[SW_SECRET], clock=CLOCK, metrics=False)
    headers = sw.sign("msg_1", TS, b"{}")
    headers["webhook-timestamp"] = ts
    with pytest.raises(MalformedHeader):
        sw.verify(b"{}", headers)
    svix = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    with pytest.raises(MalformedHeader):
        sw.verify(b"{}", svix)


@pytest.mark.parametrize(
    "ts", ["\x1f1796143786", "1796143786\x85", "\t1796143786", "17961437\u0668"]
)
def test_a_stripe_timestamp_is_ascii_digits_only(ts: str) -> None:
    st = Stripe(secrets=["whsec_x"], clock=CLOCK, metrics=False)
    value = st.sign(b"{}", TS)["Stripe-Signature"].replace(f"t={TS}", f"t={ts}")
    with pytest.raises(MalformedHeader):
        st.verify(b"{}", {"Stripe-Signature": value})


# ------------------------------------------------------------------ signature headers


def test_a_slack_signature_with_a_trailing_form_feed_does_not_verify() -> None:
    headers = slack_headers()
    for junk in ("\x0c", "\x0b", "\x1c", "\x85", "\u2028", "\r", "\n", "\x00"):
        mutated = dict(headers, **{"X-Slack-Signature": headers["X-Slack-Signature"] + junk})
        with pytest.raises(SignatureMismatch):
            slack().verify(SLACK_BODY, mutated)
        mutated["X-Slack-Signature"] = junk + headers["X-Slack-Signature"]
        with pytest.raises(MalformedHeader):  # no longer starts with "v0="
            slack().verify(SLACK_BODY, mutated)


def _signed() -> list[tuple[object, str, bytes, dict[str, str], str | None]]:
    """(scheme, its signature header, body, headers, url) for every scheme that signs."""
    url = "https://example.com/sms"
    sw = StandardWebhooks(secrets=[SW_SECRET], clock=CLOCK, metrics=False)
    st = Stripe(secrets=["whsec_x"], clock=CLOCK, metrics=False)
    gh = GitHub(secrets=[GH_SECRET], metrics=False)
    sh = Shopify(secrets=["shp"], metrics=False)
    hm = HMACScheme("razorpay", header="X-Razorpay-Signature", secrets=["r"], metrics=False)
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    form = b"From=%2B14158675309&Body=hi"
    return [
        (sw, "webhook-signature", b"{}", sw.sign("msg_1", TS, b"{}"), None),
        (st, "Stripe-Signature", b"{}", st.sign(b"{}", TS), None),
        (gh, "X-Hub-Signature-256", GH_BODY, gh.sign(GH_BODY), None),
        (slack(), "X-Slack-Signature", SLACK_BODY, slack_headers(), None),
        (sh, "X-Shopify-Hmac-Sha256", b"{}", sh.sign(b"{}"), None),
        (hm, "X-Razorpay-Signature", b"{}", hm.sign(b"{}"), None),
        (tw, "X-Twilio-Signature", form, tw.sign(url, form), url),
    ]


CASES = _signed()
IDS = [type(c[0]).__name__ for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("ows", [" ", "\t", " \t ", "\t\t"])
def test_http_ows_around_a_signature_header_is_dropped(case: tuple, ows: str) -> None:  # type: ignore[type-arg]
    scheme, header, body, headers, url = case
    for value in (ows + headers[header], headers[header] + ows, ows + headers[header] + ows):
        kwargs = {"url": url} if url else {}
        assert scheme.verify(body, dict(headers, **{header: value}), **kwargs).body == body


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize(
    "junk", ["\x0c", "\x0b", "\x1c", "\x1f", "\x85", "\u00a0", "\u3000", "\r\n"]
)
def test_other_whitespace_around_a_signature_header_is_not_dropped(case: tuple, junk: str) -> None:  # type: ignore[type-arg]
    scheme, header, body, headers, url = case
    for value in (junk + headers[header], headers[header] + junk):
        kwargs = {"url": url} if url else {}
        with pytest.raises((SignatureMismatch, MalformedHeader)):
            scheme.verify(body, dict(headers, **{header: value}), **kwargs)


def test_stripe_entries_may_carry_ows_but_not_other_whitespace() -> None:
    st = Stripe(secrets=["whsec_x"], clock=CLOCK, metrics=False)
    t, v1 = st.sign(b"{}", TS)["Stripe-Signature"].split(",")
    for ok in (f"{t}, {v1}", f"{t},\t{v1}", f" {t} , {v1} ", f"{t},v0=x, {v1}"):
        assert st.verify(b"{}", {"Stripe-Signature": ok}).timestamp == TS
    for bad in (f"{t},\x0c{v1}", f"{t},{v1}\x85", f"{t}\x1f,{v1}"):
        with pytest.raises(WebhookError):
            st.verify(b"{}", {"Stripe-Signature": bad})


def test_standard_webhooks_entries_are_separated_by_spaces_only() -> None:
    sw = StandardWebhooks(secrets=[SW_SECRET], clock=CLOCK, metrics=False)
    headers = sw.sign("msg_1", TS, b"{}")
    sig = headers["webhook-signature"]
    for ok in (f"v1,AAAA {sig}", f"{sig}  v1,AAAA", f"v2,x {sig}"):
        assert sw.verify(b"{}", dict(headers, **{"webhook-signature": ok})).id == "msg_1"
    for bad in (f"v1,AAAA\x0c{sig}", f"v1,AAAA\n{sig}", f"v1,AAAA\x85{sig}", f"v1,AAAA\t{sig}"):
        with pytest.raises(SignatureMismatch):
            sw.verify(b"{}", dict(headers, **{"webhook-signature": bad}))


def test_bearer_secret_drops_ows_only() -> None:
    cron = BearerSecret(secrets=["cron-secret"], metrics=False)
    for ok in ("Bearer cron-secret", " Bearer cron-secret\t", "Bearer  cron-secret"):
        cron.verify({"Authorization": ok})
    for bad in ("Bearer cron-secret\x0c", "Bearer \x85cron-secret", "Bearer cron-secret\n"):
        with pytest.raises(SignatureMismatch):
            cron.verify({"Authorization": bad})


# ------------------------------------------------------------------ hex letter case


def test_hex_signatures_in_either_case_still_verify_github_and_slack() -> None:
    gh = GitHub(secrets=[GH_SECRET], metrics=False)
    hexpart = GH_SIG[len("sha256=") :]
    assert gh.verify(GH_BODY, {"X-Hub-Signature-256": "sha256=" + hexpart.upper()})
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(hexpart))
    assert gh.verify(GH_BODY, {"X-Hub-Signature-256": "sha256=" + mixed})
    headers = slack_headers()
    upper = "v0=" + headers["X-Slack-Signature"][3:].upper()
    assert slack().verify(SLACK_BODY, dict(headers, **{"X-Slack-Signature": upper}))
    # The prefix is not hex: its case is not free.
    with pytest.raises(MalformedHeader):
        gh.verify(GH_BODY, {"X-Hub-Signature-256": "SHA256=" + hexpart})


def test_non_ascii_letters_that_lower_to_hex_do_not_verify() -> None:
    # str.lower() maps some non-ASCII letters to ASCII ones (KELVIN SIGN -> "k");
    # only ASCII letters have their case folded.
    gh = GitHub(secrets=[GH_SECRET], metrics=False)
    hexpart = GH_SIG[len("sha256=") :]
    i = next(i for i, c in enumerate(hexpart) if c in "abcdef")
    for odd in ("\u212a", "\u0130", "\uff21"):
        with pytest.raises(SignatureMismatch):
            gh.verify(
                GH_BODY, {"X-Hub-Signature-256": "sha256=" + hexpart[:i] + odd + hexpart[i + 1 :]}
            )


# ------------------------------------------------------------------ Twilio's malleable forms

URL = "https://example.com/sms"
SENT = [("CallSid", "CA1"), ("From", "+14158675309"), ("To", "+18005551212"), ("Body", "hi")]
SHIFTED = b"CallSid=CA1&Fr=om%2B14158675309&To=%2B18005551212&Body=hi"


def test_twilio_signatures_are_malleable_as_in_the_official_sdk() -> None:
    # The weakness the docs describe: the '=' moved, the same signature.
    tw = Twilio(auth_tokens=["tok"], metrics=False)
    sig = tw.sign(URL, urlencode(SENT).encode())["X-Twilio-Signature"]
    assert tw.verify(SHIFTED, {"X-Twilio-Signature": sig}, url=URL).form()["Fr"] == [
        "om+14158675309"
    ]
    shifted = [("CallSid", "CA1"), ("Fr", "om+14158675309"), ("To", "+18005551212"), ("Body", "hi")]
    assert RequestValidator("tok").validate(URL, dict(shifted), sig)


def test_twilio_expect_params_rejects_a_form_lacking_one() -> None:
    tw = Twilio(auth_tokens=["tok"], expect_params={"From", "To", "Body"}, metrics=False)
    sig = tw.sign(URL, urlencode(SENT).encode())["X-Twilio-Signature"]
    event = tw.verify(urlencode(SENT).encode(), {"X-Twilio-Signature": sig}, url=URL)
    assert event.form()["From"] == ["+14158675309"]
    with pytest.raises(MalformedForm) as err:
        tw.verify(SHIFTED, {"X-Twilio-Signature": sig}, url=URL)
    exc = err.value
    assert (exc.reason, exc.status, exc.missing, exc.bad_names) == (
        "malformed_form",
        400,
        ("From",),
        0,
    )
    assert isinstance(exc, MalformedBody) and exc.scheme == "twilio"
    assert "From" in str(exc) and "om+" not in str(exc) and "Fr," not in str(exc)
    assert tw.counts == {"ok": 1, "malformed_form": 1}


def test_twilio_expect_params_rejects_a_name_outside_the_charset() -> None:
    # Body=a+b shifted to "Bodya+=b": the same run-together text, all expected names
    # present but one name carries '+'.
    tw = Twilio(auth_tokens=["tok"], expect_params={"From", "To"}, metrics=False)
    sent = [("From", "+1"), ("To", "+2"), ("Body", "a+b")]
    sig = tw.sign(URL, urlencode(sent).encode())["X-Twilio-Signature"]
    lax = Twilio(auth_tokens=["tok"], metrics=False)
    shifted = b"From=%2B1&To=%2B2&Bodya%2B=b"
    assert lax.verify(shifted, {"X-Twilio-Signature": sig}, url=URL)
    with pytest.raises(MalformedForm) as err:
        tw.verify(shifted, {"X-Twilio-Signature": sig}, url=URL)
    assert (err.value.missing, err.value.bad_names) == ((), 1)
    assert "Bodya" not in str(err.value)
    # An empty name ("=x") is outside it too.
    sig2 = tw.sign(URL, b"From=1&To=2&=x")["X-Twilio-Signature"]
    with pytest.raises(MalformedForm):
        tw.verify(b"From=1&To=2&=x", {"X-Twilio-Signature": sig2}, url=URL)


def test_twilio_expect_params_allows_other_names_and_leaves_json_bodies_alone() -> None:
    tw = Twilio(auth_tokens=["tok"], expect_params={"From"}, metrics=False)
    body = b"From=%2B1&NumMedia=0&MediaUrl0=x&Some_New_Param=1"
    sig = tw.sign(URL, body)["X-Twilio-Signature"]
    assert tw.verify(body, {"X-Twilio-Signature": sig}, url=URL)
    json_url = tw.json_url(URL, b'{"a": 1}')
    sig = tw.sign(json_url)["X-Twilio-Signature"]
    assert tw.verify(b'{"a": 1}', {"X-Twilio-Signature": sig}, url=json_url).json() == {"a": 1}


def test_twilio_a_bad_signature_is_a_mismatch_before_the_form_is_judged() -> None:
    tw = Twilio(auth_tokens=["tok"], expect_params={"From"}, metrics=False)
    with pytest.raises(SignatureMismatch):
        tw.verify(b"X=1", {"X-Twilio-Signature": "AAAA"}, url=URL)


def test_twilio_expect_params_is_checked_when_built() -> None:
    with pytest.raises(ValueError, match="A-Za-z0-9_"):
        Twilio(auth_tokens=["tok"], expect_params={"From", "Bad-Name"})
    with pytest.raises(TypeError):
        Twilio(auth_tokens=["tok"], expect_params="From")
    tw = Twilio(auth_tokens=["tw-s3cret"], expect_params=["To", "From"], metrics=False)
    assert tw.expect_params == frozenset({"From", "To"})
    assert "expect_params=['From', 'To']" in repr(tw) and "s3cret" not in repr(tw)
    assert Twilio(auth_tokens=["tok"], metrics=False).expect_params is None


def test_twilio_expect_params_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TOKEN_TEST", "tok")
    tw = Twilio.from_env("TW_TOKEN_TEST", expect_params={"From"}, metrics=False)
    assert tw.expect_params == frozenset({"From"})


def test_twilio_expect_params_cannot_close_every_shift() -> None:
    # What the docs say it does not do: a value that holds another expected name can
    # still be split the other way (Body "hiFrom+1999", From "+1415" run together as
    # Body "hi", From "+1999From+1415"). Apps act on values they check themselves.
    tw = Twilio(auth_tokens=["tok"], expect_params={"From", "Body"}, metrics=False)
    sent = b"Body=hiFrom%2B1999&From=%2B1415"
    sig = tw.sign(URL, sent)["X-Twilio-Signature"]
    event = tw.verify(b"Body=hi&From=%2B1999From%2B1415", {"X-Twilio-Signature": sig}, url=URL)
    assert event.form()["From"] == ["+1999From+1415"]


def test_malformed_form_is_public() -> None:
    assert "MalformedForm" in wh.__all__ and issubclass(wh.MalformedForm, wh.MalformedBody)
