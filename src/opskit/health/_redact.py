"""URLs reduced to ``scheme://host[:port]/path`` wherever they appear in text.

Userinfo (``user:password@``), the query and the fragment are where secrets
live in a URL (``redis://:hunter2@cache``, ``?token=...``). Every output, message
and log line of opskit.health goes through :func:`redact`.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact", "redact_url", "safe_message"]

# A scheme, "://", then anything up to whitespace or a quote/bracket that ends
# a URL embedded in prose ("... for url 'https://u:p@h/x?q=1'").
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_MAX_MESSAGE = 500


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``; ``"<url>"`` when it cannot be parsed."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<url>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def _sub(match: re.Match[str]) -> str:
    text = match.group(0)
    trail = ""
    # Prose punctuation after a URL is not part of it.
    while text and text[-1] in ".,;:)]}":
        trail = text[-1] + trail
        text = text[:-1]
    return redact_url(text) + trail


def redact(text: str) -> str:
    """``text`` with every URL in it reduced to ``scheme://host[:port]/path``."""
    if "://" not in text:
        return text
    return _URL.sub(_sub, text)


def safe_message(exc: BaseException) -> str | None:
    """The exception's own text, URLs redacted, cut to 500 characters; None if empty.

    ``str(exc)`` itself may raise (a broken ``__str__``): that yields None.
    """
    try:
        text = str(exc)
    except Exception:
        return None
    text = redact(" ".join(text.split()))
    if not text:
        return None
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text
