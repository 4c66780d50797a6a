"""Every scheme, by the name of its class: the index of the per-provider modules.

Each provider's rules live in a module of their own: ``_standard.py`` (Standard
Webhooks, Svix), ``_stripe.py``, ``_github.py``, ``_slack.py``, ``_twilio.py``,
``_shopify.py``, ``_hmac.py`` (any body HMAC, and the base GitHub and Shopify
share) and ``_bearer.py``; what they share is in ``_base.py`` (:class:`Scheme`,
:class:`VerifiedWebhook`, metrics) and ``_common.py`` (limits, header reads, MACs).
"""

from __future__ import annotations

from opskit.webhooks._base import Scheme, VerifiedWebhook
from opskit.webhooks._bearer import BearerSecret
from opskit.webhooks._common import MAX_HEADER_BYTES, MAX_SIGNATURES
from opskit.webhooks._common import _hmac_pads as _hmac_pads
from opskit.webhooks._github import GitHub
from opskit.webhooks._hmac import HMACScheme
from opskit.webhooks._shopify import Shopify
from opskit.webhooks._slack import Slack
from opskit.webhooks._standard import StandardWebhooks
from opskit.webhooks._stripe import Stripe
from opskit.webhooks._twilio import Twilio
from opskit.webhooks._twilio import _parse_form as _parse_form

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_SIGNATURES",
    "BearerSecret",
    "GitHub",
    "HMACScheme",
    "Scheme",
    "Shopify",
    "Slack",
    "StandardWebhooks",
    "Stripe",
    "Twilio",
    "VerifiedWebhook",
]
