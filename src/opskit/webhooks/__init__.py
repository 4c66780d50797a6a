"""Verify (and sign) webhook signatures over the raw bytes, with replay protection.

Schemes: :class:`StandardWebhooks` (and Svix), :class:`Stripe`, :class:`GitHub`,
:class:`Slack`, :class:`Twilio`, :class:`Shopify`, and any body HMAC with
:class:`HMACScheme`; :class:`BearerSecret` for cron endpoints. Every failure is a
:class:`WebhookError` subclass with a short ``reason`` code. ASGI and WSGI
middleware live in :mod:`opskit.webhooks.asgi` and :mod:`opskit.webhooks.wsgi`.
"""

from __future__ import annotations

from opskit.webhooks._errors import (
    MalformedBody,
    MalformedForm,
    MalformedHeader,
    MissingHeader,
    PayloadTooLarge,
    ReplayDetected,
    ReplayStoreUnavailable,
    SignatureMismatch,
    TimestampOutOfTolerance,
    WebhookError,
)
from opskit.webhooks._replay import MemoryReplayStore, RedisReplayStore, ReplayStore
from opskit.webhooks._schemes import (
    MAX_HEADER_BYTES,
    MAX_SIGNATURES,
    BearerSecret,
    GitHub,
    HMACScheme,
    Scheme,
    Shopify,
    Slack,
    StandardWebhooks,
    Stripe,
    Twilio,
    VerifiedWebhook,
)

__all__ = [
    # schemes
    "StandardWebhooks",
    "Stripe",
    "GitHub",
    "Slack",
    "Twilio",
    "Shopify",
    "HMACScheme",
    "BearerSecret",
    "Scheme",
    "VerifiedWebhook",
    # replay
    "MemoryReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    # errors
    "WebhookError",
    "MissingHeader",
    "MalformedHeader",
    "MalformedBody",
    "MalformedForm",
    "SignatureMismatch",
    "TimestampOutOfTolerance",
    "ReplayDetected",
    "ReplayStoreUnavailable",
    "PayloadTooLarge",
    # limits
    "MAX_HEADER_BYTES",
    "MAX_SIGNATURES",
]
