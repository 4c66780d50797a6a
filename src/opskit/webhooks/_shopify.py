"""Shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>``."""

from __future__ import annotations

from opskit.webhooks._hmac import _BodyMAC

__all__ = ["Shopify"]


class Shopify(_BodyMAC):
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>``.

    ``id`` is ``X-Shopify-Webhook-Id``.
    """

    kind = "shopify"
    header = "X-Shopify-Hmac-Sha256"
    encoding = "base64"
    id_header = "X-Shopify-Webhook-Id"
    __slots__ = ()

    def sign(self, body: bytes, *, webhook_id: str | None = None) -> dict[str, str]:
        headers = self._sign_headers(body)
        if webhook_id is not None:
            headers["X-Shopify-Webhook-Id"] = webhook_id
        return headers
