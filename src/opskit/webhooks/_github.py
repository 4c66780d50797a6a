"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``."""

from __future__ import annotations

from opskit.webhooks._hmac import _BodyMAC

__all__ = ["GitHub"]


class GitHub(_BodyMAC):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

    ``id`` is ``X-GitHub-Delivery``. GitHub sends no timestamp: ``tolerance`` is
    only how long the replay store remembers a message.
    """

    kind = "github"
    header = "X-Hub-Signature-256"
    sig_prefix = "sha256="
    id_header = "X-GitHub-Delivery"
    __slots__ = ()

    def sign(self, body: bytes, *, delivery: str | None = None) -> dict[str, str]:
        headers = self._sign_headers(body)
        if delivery is not None:
            headers["X-GitHub-Delivery"] = delivery
        return headers
