"""``opskit webhooks sign|verify``: exercise a webhook handler without the provider.

``sign`` reads a body on stdin (or ``--body-file``) and prints the headers the
provider would send, or with ``--curl URL`` a ready curl command. ``verify``
checks a body against ``--header 'Name: value'`` arguments: exit 0 when it
verifies, 1 printing the failure's ``reason`` code otherwise. Secrets are read
only from ``--secret-env VAR`` or ``--secret-file PATH``, never from the command
line. Bad input is a one-line message and exit 2: never a traceback, never a secret.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from opskit.webhooks._base import Scheme
from opskit.webhooks._bearer import BearerSecret
from opskit.webhooks._errors import WebhookError
from opskit.webhooks._github import GitHub
from opskit.webhooks._hmac import HMACScheme
from opskit.webhooks._shopify import Shopify
from opskit.webhooks._slack import Slack
from opskit.webhooks._standard import StandardWebhooks
from opskit.webhooks._stripe import Stripe
from opskit.webhooks._twilio import Twilio

__all__ = ["main"]

SCHEMES = ("standard-webhooks", "stripe", "github", "slack", "twilio", "shopify", "hmac", "bearer")
_PROG = "opskit webhooks"
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")  # names echoed back (by convention)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP field name (RFC 9110)


class UsageError(Exception):
    """Bad input: the message is printed (it never holds a secret) and the exit is 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            # argparse would echo them, and one may be a secret typed on the command line.
            message = (
                "unrecognized arguments (secrets are read from --secret-env VAR or "
                "--secret-file PATH, never from the command line)"
            )
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_PROG,
        description=__doc__,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    sign = sub.add_parser(
        "sign", help="print the headers (or a curl command) for a body", allow_abbrev=False
    )
    verify = sub.add_parser(
        "verify",
        help="verify a body against headers: exit 0, or 1 and the reason",
        allow_abbrev=False,
    )
    for p in (sign, verify):
        p.add_argument("--scheme", required=True, type=_scheme_name, metavar="|".join(SCHEMES))
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument(
            "--secret-env",
            metavar="VAR",
            help="environment variable holding the secret (several: comma-separated)",
        )
        src.add_argument(
            "--secret-file", metavar="PATH", help="file holding the secret (one a line)"
        )
        p.add_argument("--body-file", metavar="PATH", help="read the body from PATH, not stdin")
        p.add_argument("--url", help="the URL the provider requests (Twilio signs it)")
        hm = p.add_argument_group("--scheme hmac")
        hm.add_argument("--hmac-header", metavar="NAME", help="the signature header (required)")
        hm.add_argument(
            "--algorithm", default="sha256", choices=("sha1", "sha256", "sha384", "sha512")
        )
        hm.add_argument("--encoding", default="hex", choices=("hex", "base64"))
        hm.add_argument("--prefix", default="", help="signature prefix, e.g. 'sha256='")
        p.add_argument(
            "--bearer-header",
            default="Authorization",
            metavar="NAME",
            help="--scheme bearer: the header (default Authorization)",
        )
    sign.add_argument(
        "--curl", metavar="URL", help="print a curl command that posts the body to URL"
    )
    sign.add_argument("--id", help="message id (Standard Webhooks; GitHub/Shopify delivery id)")
    sign.add_argument("--timestamp", type=int, help="signing time, Unix seconds (default now)")
    sign.add_argument(
        "--content-type", help="for --curl (default: JSON if the body parses, else a form)"
    )
    verify.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="a request header; repeat for each",
    )
    verify.add_argument(
        "--tolerance",
        type=_tolerance,
        default=300.0,
        metavar="SECONDS|none",
        help="timestamp window either side of now (default 300)",
    )
    verify.add_argument(
        "--expect-param",
        action="append",
        metavar="NAME",
        help="--scheme twilio: a form parameter that must be present; repeat",
    )
    return parser


def _scheme_name(value: str) -> str:
    name = value.strip().lower().replace("_", "-")
    if name not in SCHEMES:
        raise argparse.ArgumentTypeError(f"unknown scheme; choose from {', '.join(SCHEMES)}")
    return name


def _tolerance(value: str) -> float | None:
    if value.strip().lower() == "none":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("seconds (a number > 0) or 'none'") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError("seconds (a number > 0) or 'none'")
    return seconds


# --------------------------------------------------------------------------- inputs


def _secrets(args: argparse.Namespace) -> list[str]:
    if args.secret_env is not None:
        var = args.secret_env
        raw = os.environ.get(var)
        if raw is None:
            if not _ENV_NAME.fullmatch(var):  # perhaps the secret itself: not echoed
                raise UsageError("--secret-env takes the NAME of an environment variable")
            raise UsageError(f"environment variable {var} is not set")
        items = [s.strip() for s in raw.split(",") if s.strip()]
        where = f"environment variable {var}"
    else:
        path = args.secret_file
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read --secret-file {path}: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--secret-file {path} is not UTF-8 text") from None
        items = [line.strip() for line in text.splitlines() if line.strip()]
        where = f"--secret-file {path}"
    if not items:
        raise UsageError(f"{where} holds no secret")
    return items


def _body(args: argparse.Namespace) -> bytes:
    if args.body_file is not None:
        try:
            with open(args.body_file, "rb") as f:
                return f.read()
        except OSError as exc:
            raise UsageError(f"cannot read --body-file {args.body_file}: {exc.strerror}") from None
    stdin = sys.stdin
    if stdin is None:
        raise UsageError("no body: pipe it on stdin or give --body-file PATH")
    if stdin.isatty():
        raise UsageError("the body is read from stdin: pipe it in or give --body-file PATH")
    return stdin.buffer.read()


def _headers(values: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for n, raw in enumerate(values, 1):
        name, colon, value = raw.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise UsageError(f"--header #{n}: expected 'Name: value' with a valid header name")
        if any(c in value for c in "\r\n\0"):
            raise UsageError(f"--header #{n} ({name}): a value may not hold CR, LF or NUL")
        out.append((name, value.strip(" \t")))
    return out


def _safe(message: str, secrets: Sequence[str]) -> str:
    """``message``, unless it holds a secret (opskit's never do; this makes sure)."""
    return "invalid secret or option" if any(s and s in message for s in secrets) else message


def _build(args: argparse.Namespace, secrets: list[str]) -> Scheme | BearerSecret:
    tolerance = getattr(args, "tolerance", 300.0)
    common: dict[str, Any] = {"tolerance": tolerance, "metrics": False}
    name = args.scheme
    try:
        if name == "standard-webhooks":
            return StandardWebhooks(secrets=secrets, **common)
        if name == "stripe":
            return Stripe(secrets=secrets, **common)
        if name == "github":
            return GitHub(secrets=secrets, **common)
        if name == "slack":
            return Slack(secrets=secrets, **common)
        if name == "shopify":
            return Shopify(secrets=secrets, **common)
        if name == "twilio":
            expect = getattr(args, "expect_param", None)
            return Twilio(auth_tokens=secrets, expect_params=expect, **common)
        if name == "hmac":
            if not args.hmac_header:
                raise UsageError("--scheme hmac needs --hmac-header NAME")
            return HMACScheme(
                "hmac",
                header=args.hmac_header,
                secrets=secrets,
                algorithm=args.algorithm,
                encoding=args.encoding,
                prefix=args.prefix,
                **common,
            )
        return BearerSecret(secrets=secrets, header=args.bearer_header, metrics=False)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--scheme {name}: {_safe(str(exc), secrets)}") from None


# --------------------------------------------------------------------------- actions


def _sign(args: argparse.Namespace, out: Any) -> int:
    secrets = _secrets(args)
    scheme = _build(args, secrets)
    body = _body(args)
    ts = args.timestamp
    if isinstance(scheme, StandardWebhooks):
        headers = scheme.sign(args.id or "msg_" + os.urandom(12).hex(), ts, body)
    elif isinstance(scheme, Stripe | Slack):
        headers = scheme.sign(body, ts)
    elif isinstance(scheme, GitHub):
        headers = scheme.sign(body, delivery=args.id)
    elif isinstance(scheme, Shopify):
        headers = scheme.sign(body, webhook_id=args.id)
    elif isinstance(scheme, Twilio):
        url = args.url or args.curl
        if not url:
            raise UsageError(
                "--scheme twilio signs the URL it is sent to: give --url URL or --curl URL"
            )
        headers = scheme.sign(url, body)
    elif isinstance(scheme, HMACScheme):
        headers = scheme.sign(body)
    else:
        assert isinstance(scheme, BearerSecret)
        headers = scheme.sign()
    if args.curl is None:
        for key, value in headers.items():
            out.write(f"{key}: {value}\n")
        return 0
    out.write(_curl(args, body, headers) + "\n")
    return 0


def _curl(args: argparse.Namespace, body: bytes, headers: dict[str, str]) -> str:
    ctype = args.content_type or _guess_type(body)
    parts = ["curl", "-sS", "-X", "POST", shlex.quote(args.curl)]
    for key, value in [("Content-Type", ctype), *headers.items()]:
        parts += ["-H", shlex.quote(f"{key}: {value}")]
    if args.body_file is not None:
        parts += ["--data-binary", shlex.quote("@" + args.body_file)]
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = "\0"
        if "\0" in text:
            raise UsageError(
                "a body that is not text cannot go into a command line: use --body-file"
            )
        parts += ["--data-binary", shlex.quote(text) if text else "''"]
    return " ".join(parts)


def _guess_type(body: bytes) -> str:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return "application/x-www-form-urlencoded"
    return "application/json"


def _verify(args: argparse.Namespace, out: Any, err: Any) -> int:
    secrets = _secrets(args)
    scheme = _build(args, secrets)
    headers = _headers(args.header)
    body = _body(args)
    try:
        if isinstance(scheme, BearerSecret):
            scheme.verify(headers)
            out.write("ok\n")
            return 0
        if isinstance(scheme, Twilio) and not args.url:
            raise UsageError(
                "--scheme twilio verifies against the URL Twilio requested: give --url URL"
            )
        event = scheme.verify(body, headers, url=args.url)
    except WebhookError as exc:
        out.write(exc.reason + "\n")
        err.write(f"{_PROG}: {_safe(str(exc), secrets)}\n")
        return 1
    fields = [f"scheme={event.scheme}"]
    if event.id is not None:
        fields.append(f"id={event.id}")
    if event.timestamp is not None:
        fields.append(f"timestamp={event.timestamp}")
    out.write("ok " + " ".join(fields) + "\n")
    return 0


def _quiet_logging() -> None:
    """This process's structlog: warnings and up, on stderr (stdout is the answer)."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``opskit webhooks ...``; returns the exit status (0, 1 or 2)."""
    for stream in (sys.stdout, sys.stderr):  # a curl command may carry a UTF-8 body
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(encoding="utf-8", errors="backslashreplace")
    out, err = sys.stdout, sys.stderr
    _quiet_logging()
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
        if args.action == "sign":
            return _sign(args, out)
        return _verify(args, out, err)
    except UsageError as exc:
        err.write(f"{_PROG}: error: {exc}\n(see {_PROG} {{sign,verify}} --help)\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI answers with a line, never a traceback
        err.write(f"{_PROG}: error: unexpected {type(exc).__name__}\n")
        return 2
