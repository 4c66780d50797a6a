"""``opskit webhooks sign|verify``, end to end: the real console script as a subprocess.

sign -> verify for every scheme that signs, and sign -> the ASGI WebhookMiddleware
behind a real uvicorn (the printed curl command, run by the real curl).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from _servers import run_asgi
from opskit.webhooks import (
    BearerSecret,
    GitHub,
    HMACScheme,
    Shopify,
    Slack,
    StandardWebhooks,
    Stripe,
    Twilio,
)
from opskit.webhooks import asgi as wasgi
from webhooks._wh import SW_SECRET

OPSKIT = shutil.which("opskit", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(OPSKIT is None, reason="the opskit console script is not installed")

SECRETS = {
    "standard-webhooks": SW_SECRET,
    "stripe": "whsec_cli_stripe_secret",
    "github": "gh-cli-secret-0451",
    "slack": "slack-cli-secret-0451",
    "twilio": "twilio-cli-token-0451",
    "shopify": "shopify-cli-secret-0451",
    "hmac": "hmac-cli-secret-0451",
    "bearer": "bearer-cli-secret-0451",
}
EXTRA = {"hmac": ["--hmac-header", "X-Razorpay-Signature"]}
VAR = "OPSKIT_TEST_WEBHOOK_SECRET"
JSON_BODY = b'{"id": "evt_1", "note": "caf\xc3\xa9 \'quoted\' & $HOME"}\n'
FORM_BODY = b"From=%2B14158675309&To=%2B18005551212&Body=hello+world"


def body_for(scheme: str) -> bytes:
    return FORM_BODY if scheme in ("twilio", "slack") else JSON_BODY


def opskit(
    *args: str, body: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert OPSKIT is not None
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_TEST_")}
    full_env.update(env or {})
    return subprocess.run(
        [OPSKIT, "webhooks", *args],
        input=body.decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        env=full_env,
        timeout=60,
        check=False,
    )


def sign(scheme: str, body: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    return opskit(
        "sign",
        "--scheme",
        scheme,
        "--secret-env",
        VAR,
        *EXTRA.get(scheme, []),
        *extra,
        body=body,
        env={VAR: SECRETS[scheme]},
    )


def header_args(printed: str) -> list[str]:
    lines = [line for line in printed.splitlines() if line]
    assert lines and all(": " in line for line in lines), printed
    return [a for line in lines for a in ("--header", line)]


def verify(scheme: str, body: bytes, headers: Sequence[str], *extra: str) -> Any:
    return opskit(
        "verify",
        "--scheme",
        scheme,
        "--secret-env",
        VAR,
        *EXTRA.get(scheme, []),
        *headers,
        *extra,
        body=body,
        env={VAR: SECRETS[scheme]},
    )


def assert_clean(proc: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream
        for secret in secrets or tuple(SECRETS.values()):
            assert secret not in stream


URL = "https://hooks.example.com/sms?x=1"


@pytest.mark.parametrize("scheme", sorted(SECRETS))
def test_sign_then_verify(scheme: str) -> None:
    body = body_for(scheme)
    url = ["--url", URL] if scheme == "twilio" else []
    signed = sign(scheme, body, *url)
    assert signed.returncode == 0, signed.stderr
    assert signed.stderr == ""
    headers = header_args(signed.stdout)
    ok = verify(scheme, body, headers, *url)
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.startswith("ok")
    if scheme != "bearer":
        assert f"scheme={scheme.replace('-', '_')}" in ok.stdout
        assert_clean(signed)
        bad = verify(scheme, body + b"x", headers, *url)
        assert (bad.returncode, bad.stdout) == (1, "signature_mismatch\n")
        assert bad.stderr.startswith("opskit webhooks: ")
        assert_clean(bad)
    else:  # the bearer header is the secret itself, by design; a wrong one fails
        assert signed.stdout == f"Authorization: Bearer {SECRETS['bearer']}\n"
        bad = verify(scheme, body, ["--header", "Authorization: Bearer nope"])
        assert (bad.returncode, bad.stdout) == (1, "signature_mismatch\n")
    missing = verify(scheme, body, [], *url)
    assert (missing.returncode, missing.stdout) == (1, "missing_header\n")


def test_the_printed_headers_are_what_the_library_verifies() -> None:
    signed = sign("stripe", JSON_BODY, "--timestamp", "1796143786")
    name, _, value = signed.stdout.strip().partition(": ")
    assert name == "Stripe-Signature" and value.startswith("t=1796143786,v1=")
    from opskit.testing import ManualClock

    st = Stripe(secrets=[SECRETS["stripe"]], clock=ManualClock(wall_start=1796143786))
    assert st.verify(JSON_BODY, {name: value}).timestamp == 1796143786
    assert value == st.sign(JSON_BODY, 1796143786)["Stripe-Signature"]


def test_ids_and_timestamps_can_be_given() -> None:
    sw = sign("standard-webhooks", JSON_BODY, "--id", "msg_cli_1")
    assert "webhook-id: msg_cli_1\n" in sw.stdout
    ok = verify("standard-webhooks", JSON_BODY, header_args(sw.stdout))
    assert "id=msg_cli_1" in ok.stdout
    gh = sign("github", JSON_BODY, "--id", "d-1")
    assert "X-GitHub-Delivery: d-1\n" in gh.stdout
    stale = sign("slack", FORM_BODY, "--timestamp", "1500000000")
    out = verify("slack", FORM_BODY, header_args(stale.stdout))
    assert (out.returncode, out.stdout) == (1, "timestamp_out_of_tolerance\n")
    out = verify("slack", FORM_BODY, header_args(stale.stdout), "--tolerance", "none")
    assert out.returncode == 0 and "timestamp=1500000000" in out.stdout


def test_secret_file_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("whsec_new_one\nwhsec_cli_stripe_secret\n")
    signed = sign("stripe", JSON_BODY)  # with the old secret, from the environment
    out = opskit(
        "verify",
        "--scheme",
        "stripe",
        "--secret-file",
        str(path),
        *header_args(signed.stdout),
        body=JSON_BODY,
    )
    assert out.returncode == 0, out.stderr
    path.write_text("whsec_new_one\n")
    out = opskit(
        "verify",
        "--scheme",
        "stripe",
        "--secret-file",
        str(path),
        *header_args(signed.stdout),
        body=JSON_BODY,
    )
    assert (out.returncode, out.stdout) == (1, "signature_mismatch\n")
    body_file = tmp_path / "body.json"
    body_file.write_bytes(JSON_BODY)
    out = opskit(
        "sign", "--scheme", "stripe", "--secret-file", str(path), "--body-file", str(body_file)
    )
    assert out.returncode == 0 and out.stdout.startswith("Stripe-Signature: t=")


def test_twilio_expect_params_from_the_command_line() -> None:
    signed = sign("twilio", FORM_BODY, "--url", URL)
    shifted = FORM_BODY.replace(b"From=%2B", b"Fr=om%2B")
    lax = verify("twilio", shifted, header_args(signed.stdout), "--url", URL)
    assert lax.returncode == 0  # the weakness, as in twilio-python
    strict = verify(
        "twilio",
        shifted,
        header_args(signed.stdout),
        "--url",
        URL,
        "--expect-param",
        "From",
        "--expect-param",
        "Body",
    )
    assert (strict.returncode, strict.stdout) == (1, "malformed_form\n")
    assert "missing parameter From" in strict.stderr


# ------------------------------------------------------------------ bad input: exit 2


def usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith("opskit webhooks: error: ")
    for needle in needles:
        assert needle in proc.stderr
    assert_clean(proc)


@pytest.mark.parametrize(
    "flag",
    [
        ["--secret", "whsec_typed_on_argv"],
        ["--secret=whsec_typed_on_argv"],
        ["--secre", "whsec_typed_on_argv"],
        ["whsec_typed_on_argv"],
    ],
)
def test_a_secret_on_the_command_line_is_refused_and_never_echoed(flag: list[str]) -> None:
    proc = opskit(
        "sign",
        "--scheme",
        "stripe",
        "--secret-env",
        VAR,
        *flag,
        body=JSON_BODY,
        env={VAR: SECRETS["stripe"]},
    )
    usage_error(proc, "--secret-env VAR or --secret-file PATH")
    assert_clean(proc, "whsec_typed_on_argv", SECRETS["stripe"])
    proc = opskit("sign", "--scheme", "stripe", *flag, body=JSON_BODY)
    assert proc.returncode == 2 and "whsec_typed_on_argv" not in proc.stderr + proc.stdout


def test_a_secret_given_to_secret_env_is_not_echoed() -> None:
    proc = opskit("sign", "--scheme", "stripe", "--secret-env", "whsec_my_real_secret",
                  body=JSON_BODY)  # fmt: skip
    usage_error(proc, "NAME of an environment variable")
    assert_clean(proc, "whsec_my_real_secret")


ST, TW = {VAR: SECRETS["stripe"]}, {VAR: SECRETS["twilio"]}
SIGN_ST = ["sign", "--scheme", "stripe", "--secret-env", VAR]
VERIFY_ST = ["verify", "--scheme", "stripe", "--secret-env", VAR]
VERIFY_TW = ["verify", "--scheme", "twilio", "--secret-env", VAR]
BAD_INPUT = [  # (arguments, environment, body, what the message says)
    (["sign", "--scheme", "stripe", "--secret-env", "OPSKIT_TEST_UNSET"], {}, JSON_BODY,
     "environment variable OPSKIT_TEST_UNSET is not set"),
    (SIGN_ST, {VAR: " , "}, JSON_BODY, "holds no secret"),
    (["sign", "--scheme", "stripe", "--secret-file", "/nonexistent/secret"], {}, JSON_BODY,
     "cannot read --secret-file"),
    (["sign", "--scheme", "stripe"], ST, JSON_BODY, "--secret-env"),
    (["sign", "--scheme", "paypal", "--secret-env", VAR], ST, b"", "unknown scheme"),
    (["frobnicate"], {}, b"", "invalid choice"),
    ([*VERIFY_ST, "--header", "NoColon"], ST, JSON_BODY, "--header #1"),
    ([*VERIFY_ST, "--header", "Stripe Signature: t=1"], ST, JSON_BODY, "--header #1"),
    ([*VERIFY_ST, "--header", "A: b", "--header", "X: a\rb"], ST, JSON_BODY, "--header #2"),
    ([*VERIFY_ST, "--tolerance", "-1"], ST, JSON_BODY, "--tolerance"),
    (["sign", "--scheme", "twilio", "--secret-env", VAR], TW, FORM_BODY, "--url URL"),
    ([*VERIFY_TW, "--header", "X-Twilio-Signature: x"], TW, FORM_BODY, "--url URL"),
    ([*VERIFY_TW, "--url", URL, "--expect-param", "Bad-Name"], TW, FORM_BODY, "A-Za-z0-9_"),
    (["sign", "--scheme", "hmac", "--secret-env", VAR], ST, JSON_BODY, "--hmac-header"),
    (["sign", "--scheme", "standard-webhooks", "--secret-env", VAR],
     {VAR: "whsec_!!not*base64!!"}, JSON_BODY, "base64"),
    ([*SIGN_ST, "--curl", "http://127.0.0.1:1/x"], ST, b"\x00\xffbinary", "--body-file"),
    ([*SIGN_ST, "--body-file", "/nonexistent/body"], ST, b"", "cannot read --body-file"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "body", "needle"), BAD_INPUT)
def test_bad_input_is_a_message_and_exit_2(
    args: list[str], env: dict[str, str], body: bytes, needle: str
) -> None:
    proc = opskit(*args, body=body, env=env)
    usage_error(proc, needle)
    assert_clean(proc, *SECRETS.values(), *(v for v in env.values() if len(v) > 6))


def test_help_lists_the_subcommand() -> None:
    assert OPSKIT is not None
    top = subprocess.run([OPSKIT, "--help"], capture_output=True, text=True, check=True)
    assert "webhooks" in top.stdout
    proc = opskit("sign", "--help")
    assert proc.returncode == 0 and "--secret-env" in proc.stdout and "--curl" in proc.stdout


# ------------------------------------------------------------------ sign -> real middleware


def routes() -> dict[str, Any]:
    s = SECRETS
    return {
        "/hooks/standard-webhooks": StandardWebhooks(
            secrets=[s["standard-webhooks"]], metrics=False
        ),
        "/hooks/stripe": Stripe(secrets=[s["stripe"]], metrics=False),
        "/hooks/github": GitHub(secrets=[s["github"]], metrics=False),
        "/hooks/slack": Slack(secrets=[s["slack"]], metrics=False),
        "/hooks/twilio": Twilio(auth_tokens=[s["twilio"]], metrics=False),
        "/hooks/shopify": Shopify(secrets=[s["shopify"]], metrics=False),
        "/hooks/hmac": HMACScheme(
            "hmac", header="X-Razorpay-Signature", secrets=[s["hmac"]], metrics=False
        ),
        "/hooks/bearer": BearerSecret(secrets=[s["bearer"]], metrics=False),
    }


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        event = scope["opskit.webhook"]
        out = json.dumps(
            {
                "verified": event.scheme,
                "sha": hashlib.sha256(body).hexdigest(),
                "type": dict(scope["headers"]).get(b"content-type", b"").decode(),
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": out.encode()})

    with run_asgi(wasgi.WebhookMiddleware(app, routes())) as base:
        yield base


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("scheme", sorted(SECRETS))
def test_the_printed_curl_command_passes_the_middleware(server: str, scheme: str) -> None:
    body = body_for(scheme)
    url = f"{server}/hooks/{scheme}"
    assert OPSKIT is not None
    signed = subprocess.run(
        [OPSKIT, "webhooks", "sign", "--scheme", scheme, "--secret-env", VAR,
         *EXTRA.get(scheme, []), "--curl", url],
        input=body, capture_output=True, env={**os.environ, VAR: SECRETS[scheme]},
        timeout=60, check=False,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    command = signed.stdout.strip()  # bytes: the body is UTF-8 inside the command
    argv = shlex.split(command.decode("utf-8"))
    assert argv[:5] == ["curl", "-sS", "-X", "POST", url]
    assert argv[-2:] == ["--data-binary", body.decode("utf-8")]
    run = subprocess.run(["bash", "-c", command], capture_output=True, timeout=30, check=False)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["verified"] == routes()[f"/hooks/{scheme}"].name
    if scheme != "bearer":
        assert answer["sha"] == hashlib.sha256(body).hexdigest()
    want = "application/json" if body == JSON_BODY else "application/x-www-form-urlencoded"
    assert answer["type"] == want


@pytest.mark.parametrize("scheme", sorted(SECRETS))
def test_the_printed_headers_pass_the_middleware_and_a_changed_body_does_not(
    server: str, scheme: str
) -> None:
    body = body_for(scheme)
    url = f"{server}/hooks/{scheme}"
    signed = sign(scheme, body, "--url", url)
    headers = dict(line.split(": ", 1) for line in signed.stdout.splitlines())
    ok = httpx.post(url, content=body, headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text
    assert ok.json()["sha"] == hashlib.sha256(body).hexdigest()
    if scheme == "bearer":
        headers["Authorization"] += "x"
    changed = httpx.post(url, content=body + b"&x=1", headers=headers, timeout=10)
    assert changed.status_code == 401
    assert changed.json()["reason"] == "signature_mismatch"
