"""opskit: reliability primitives for services.

Nothing heavy is imported here: each primitive lives in its own subpackage
(``opskit.breaker``, ``opskit.retry``, ...) and is imported on demand.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["OpskitError", "__version__"]


class OpskitError(Exception):
    """Root of every exception opskit raises on purpose.

    Each module has its own subclass (``BreakerError``, ``RateLimitError``,
    ``WebhookError``, ...). No message or repr carries a secret.
    """
