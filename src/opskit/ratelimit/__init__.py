"""Rate limiting: GCRA, sliding and fixed windows, concurrency limits; memory or Redis.

::

    from opskit.ratelimit import RateLimiter

    api = RateLimiter("api", rates=["100/15minutes", "10/second"])
    d = api.hit("user:42")
    if not d.allowed: ...   # d.retry_after seconds
"""

from __future__ import annotations

from opskit.ratelimit._algo import Decision
from opskit.ratelimit._errors import RateLimitError, RateLimitExceeded
from opskit.ratelimit._keys import Request, by_header, by_ip
from opskit.ratelimit._limiter import ConcurrencyLimiter, RateLimiter
from opskit.ratelimit._memory import MemoryStore
from opskit.ratelimit._middleware import Rule
from opskit.ratelimit._rate import Rate
from opskit.ratelimit._redis import RedisStore

__all__ = [
    "RateLimiter",
    "ConcurrencyLimiter",
    "Rate",
    "Decision",
    "MemoryStore",
    "RedisStore",
    "RateLimitError",
    "RateLimitExceeded",
    "by_ip",
    "by_header",
    "Rule",
    "Request",
]
