"""Twilio: base64 HMAC-SHA1 (or SHA-256) of the URL and the sorted form parameters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import ParseResult, parse_qs, unquote_plus, urlencode, urlparse

from opskit.webhooks._base import Scheme, VerifiedWebhook
from opskit.webhooks._common import (
    _OWS,
    _ascii,
    _b64encode,
    _body,
    _digest,
    _header,
    _mac_digest,
    _new_mac,
    _required,
    _secret_bytes,
    _secret_list,
)
from opskit.webhooks._errors import MalformedForm, MalformedHeader, SignatureMismatch

__all__ = ["Twilio"]

_TWILIO_ALGOS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")


def _remove_port(uri: ParseResult) -> str:
    if not uri.port:
        return uri.geturl()
    return uri._replace(netloc=uri.netloc.split(":")[0]).geturl()


def _add_port(uri: ParseResult) -> str:
    if uri.port:
        return uri.geturl()
    port = 443 if uri.scheme == "https" else 80
    return uri._replace(netloc=f"{uri.netloc}:{port}").geturl()


def _twilio_params(pairs: Iterable[tuple[str, str]]) -> str:
    # Names sorted, each name's distinct values sorted: the order of the sorted
    # distinct (name, value) pairs, as twilio-python builds it.
    return "".join([k + v for k, v in sorted(set(pairs))])


def _parse_form(body: bytes) -> list[tuple[str, str]]:
    """``parse_qsl(body, keep_blank_values=True)``, unquoting only fields that need it."""
    pairs: list[tuple[str, str]] = []
    for field in body.decode("utf-8", "replace").split("&"):
        if not field:
            continue
        k, _, v = field.partition("=")
        if "%" in k or "+" in k:
            k = unquote_plus(k, errors="replace")
        if "%" in v or "+" in v:
            v = unquote_plus(v, errors="replace")
        pairs.append((k, v))
    return pairs


class Twilio(Scheme):
    """Twilio: ``X-Twilio-Signature``, base64 HMAC-SHA1 of URL + sorted form params.

    ``verify(body, headers, url=...)`` needs the public URL Twilio requested.
    Form bodies: each parameter name then value, names sorted, values sorted
    (as twilio-python). JSON bodies: the URL carries ``bodySHA256=<hex>``, the
    signature covers the URL alone and the body must hash to that value. The
    URL with and without its default port both verify. A request with
    ``X-Twilio-Webhooks-Signature-Settings: ...,algorithm=HMAC_SHA256`` is
    checked with HMAC-SHA256 instead.
    """

    kind = "twilio"
    _secrets_param = "auth_tokens"
    __slots__ = ("_expect", "_macs")

    def __init__(
        self,
        auth_tokens: Iterable[str | bytes],
        *,
        expect_params: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        keys = [_secret_bytes(t) for t in _secret_list(auth_tokens, "auth_tokens")]
        self._macs = {algo: [_new_mac(k, algo) for k in keys] for algo in ("sha1", "sha256")}
        if expect_params is not None:
            if isinstance(expect_params, str):
                raise TypeError("expect_params is a set of parameter names, not one string")
            expect = frozenset(expect_params)
            for param in expect:
                if not isinstance(param, str) or not _PARAM_NAME.fullmatch(param):
                    raise ValueError("expect_params names are made of [A-Za-z0-9_] only")
            self._expect: frozenset[str] | None = expect
        else:
            self._expect = None
        super().__init__(**kwargs)

    @property
    def expect_params(self) -> frozenset[str] | None:
        """The parameter names every form body must carry, or None (no check)."""
        return self._expect

    def _check_form(self, pairs: list[tuple[str, str]]) -> None:
        """Twilio signs names and values run together, so a moved ``=`` still verifies.

        With ``expect_params``, a signed form must carry every expected name and
        no name outside ``[A-Za-z0-9_]``: the shifts a body can take without
        changing the signature then no longer pass as the form that was sent.
        """
        expect = self._expect
        if expect is None:
            return
        names = {k for k, _ in pairs}
        missing = tuple(sorted(expect - names))
        bad = sum(1 for k in names if not _PARAM_NAME.fullmatch(k))
        if missing or bad:
            raise MalformedForm(missing, bad, scheme=self.name)

    def _describe(self) -> str:
        expect = "" if self._expect is None else f", expect_params={sorted(self._expect)!r}"
        return f", auth_tokens=<{len(self._macs['sha1'])}>{expect}"

    def _check(self, body: bytes, headers: Any, url: str | None, now: float) -> VerifiedWebhook:
        name = self.name
        if url is None:
            raise TypeError("Twilio.verify needs url=: the public URL Twilio requested")
        sig = _required(headers, "x-twilio-signature", "X-Twilio-Signature", name).strip(_OWS)
        settings = _header(
            headers,
            "x-twilio-webhooks-signature-settings",
            "X-Twilio-Webhooks-Signature-Settings",
            name,
        )
        algo = "sha1"
        if settings:
            for part in settings.split(","):
                key, eq, val = part.partition("=")
                val = val.strip(_OWS)
                if eq and key.strip(_OWS) == "algorithm" and val:
                    found = _TWILIO_ALGOS.get(val.upper())
                    if found is None:
                        raise MalformedHeader(
                            "X-Twilio-Webhooks-Signature-Settings",
                            "unsupported algorithm",
                            scheme=name,
                        )
                    algo = found
        try:
            parsed = urlparse(url)
            candidates = dict.fromkeys((_remove_port(parsed), _add_port(parsed)))
            query = parse_qs(parsed.query, keep_blank_values=True)
        except ValueError:
            raise MalformedHeader("Host", "the request URL is not valid", scheme=name) from None
        body_hash = query.get("bodySHA256")
        ok = True
        pairs: list[tuple[str, str]] | None = None
        if body_hash:
            ok = hmac.compare_digest(
                hashlib.sha256(body).hexdigest().encode(), _ascii(body_hash[0]).lower()
            )
            params = ""
        else:
            # A body of only "&" carries no parameter, as an empty one (twilio-python agrees).
            pairs = _parse_form(body)
            params = _twilio_params(pairs)
        provided = _ascii(sig)
        matched = False
        for candidate in candidates:
            data = (candidate + params).encode("utf-8", "surrogatepass")
            for mac in self._macs[algo]:
                h = mac.copy()
                h.update(data)
                matched |= hmac.compare_digest(_b64encode(h.digest(), newline=False), provided)
        if not (ok and matched):
            raise SignatureMismatch(scheme=name)
        if pairs is not None:
            self._check_form(pairs)
        msg_id = _header(headers, "i-twilio-idempotency-token", "I-Twilio-Idempotency-Token", name)
        return VerifiedWebhook(name, msg_id, None, body, url)

    def _replay_key(self, event: VerifiedWebhook) -> str:
        try:
            canonical = _remove_port(urlparse(event.url or ""))
        except ValueError:
            canonical = event.url or ""
        return f"{self.name}:{_digest(_ascii(canonical), b' ', event.body)}"

    def sign(
        self,
        url: str,
        body: bytes | Mapping[str, str | Sequence[str]] = b"",
        *,
        algorithm: str = "HMAC_SHA1",
    ) -> dict[str, str]:
        """``{"X-Twilio-Signature": ...}`` for a request to ``url`` with a form ``body``.

        ``body`` is the form-encoded bytes or a mapping of parameters. For a JSON
        body, sign :meth:`json_url` ``(url, body)`` with no body.
        """
        algo = _TWILIO_ALGOS[algorithm.upper()]
        if isinstance(body, Mapping):
            pairs: list[tuple[str, str]] = []
            for k, v in body.items():
                pairs.extend((k, x) for x in ([v] if isinstance(v, str) else v))
        else:
            pairs = _parse_form(_body(body))
        if "bodySHA256" in parse_qs(urlparse(url).query):
            pairs = []
        data = (url + _twilio_params(pairs)).encode("utf-8", "surrogatepass")
        sig = base64.b64encode(_mac_digest(self._macs[algo][0], data)).decode()
        headers = {"X-Twilio-Signature": sig}
        if algo != "sha1":
            headers["X-Twilio-Webhooks-Signature-Settings"] = f"algorithm={algorithm.upper()}"
        return headers

    @staticmethod
    def json_url(url: str, body: bytes) -> str:
        """``url`` with ``bodySHA256=<hex sha256 of body>`` appended, as Twilio sends JSON."""
        sep = "&" if urlparse(url).query else "?"
        return url + sep + urlencode({"bodySHA256": hashlib.sha256(body).hexdigest()})
