"""Framework-free middleware logic shared by the ASGI and WSGI adapters."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import ceil
from typing import Any, Literal, NamedTuple

from prometheus_client import CollectorRegistry

from opskit._core.asgi import Message, Send
from opskit._core.clientip import ClientIP, IPNetwork, parse_ip
from opskit._core.clock import Clock
from opskit._core.http import Headers
from opskit.ratelimit._algo import DecisionTuple
from opskit.ratelimit._keys import KeyFunc, Request, by_ip
from opskit.ratelimit._limiter import ConcurrencyLimiter, RateLike, RateLimiter, _rates

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
HeaderStyle = Literal["ietf", "legacy", "both", "none"]
# Seconds in headers are rounded up, less this much: float noise in a figure (30 s
# computed as 30.000000000004) must not turn into a second more.
FUZZ = 1e-6


def whole_seconds(seconds: float) -> int:
    """``seconds`` rounded up to a whole second for a header (never below 0)."""
    return max(0, ceil(seconds - FUZZ))


@dataclass
class Rule:
    """Which requests a limit applies to, and how.

    ``path`` is a glob (``"/api/*"``); ``methods`` restricts it (None: all).
    First matching rule wins. ``key`` makes the key from the request (None: not
    limited). ``count``: ``"all"`` requests, only ``"failures"`` (status >= 400:
    login protection) or only ``"successes"``. ``mode="delay"`` slows requests
    past the limit (each waits ``delay`` more than the last, up to ``max_delay``)
    instead of rejecting them. ``limiter`` may be a ``ConcurrencyLimiter`` (or a
    ready ``RateLimiter``) instead of ``rates``.
    """

    path: str
    methods: Sequence[str] | None = None
    rates: RateLike | Sequence[RateLike] | None = None
    key: KeyFunc = by_ip
    count: Literal["all", "failures", "successes"] = "all"
    limiter: RateLimiter | ConcurrencyLimiter | None = None
    mode: Literal["reject", "delay"] = "reject"
    delay: float = 0.5
    max_delay: float = 5.0
    algorithm: str = "gcra"
    name: str | None = None
    _methods: frozenset[str] = field(init=False, repr=False)
    _match: Callable[[str], object] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if (self.rates is None) == (self.limiter is None):
            raise ValueError(f"rule {self.path!r}: give exactly one of rates= or limiter=")
        if self.count not in ("all", "failures", "successes"):
            raise ValueError(f"rule {self.path!r}: count must be all, failures or successes")
        if self.mode not in ("reject", "delay"):
            raise ValueError(f"rule {self.path!r}: mode must be reject or delay")
        if not (self.delay >= 0 and self.max_delay >= 0):
            raise ValueError(f"rule {self.path!r}: delay and max_delay must be >= 0")
        if isinstance(self.limiter, ConcurrencyLimiter) and (
            self.count != "all" or self.mode != "reject"
        ):
            raise ValueError(f"rule {self.path!r}: a concurrency limit counts all, rejecting")
        if self.rates is not None:
            _rates(self.rates)  # malformed rates fail now, naming the string
        self._methods = frozenset(m.upper() for m in self.methods or ())
        self._match = glob(self.path)

    def matches(self, method: str, path: str) -> bool:
        methods = self._methods
        if methods and method not in methods and method.upper() not in methods:
            return False
        return bool(self._match(path))


def glob(pattern: str) -> Callable[[str], object]:
    """``fnmatch.fnmatchcase(path, pattern)`` as one precompiled test (truthy: match)."""
    if not any(c in pattern for c in "*?["):
        return pattern.__eq__
    head = pattern[:-1]
    if pattern.endswith("*") and not any(c in head for c in "*?["):
        return lambda path: path.startswith(head)
    return re.compile(fnmatch.translate(pattern)).match


RawHeaders = list[tuple[bytes, bytes]]
# An ASGI ``send`` wrapper: ``MethodType(sender, (send, decision))`` is the ``send``
# given to the app, adding the decision's rate headers to the response start. (A
# bound method is made and called for fewer instructions than a ``functools.partial``
# or a closure: about 1,000 fewer per request under uvicorn.)
Sender = Callable[[tuple[Send, DecisionTuple], Message], Awaitable[None]]


class Route(NamedTuple):
    """What the adapters need of the rule a request matched, in one memoised tuple.

    ``hit`` is the limiter's synchronous ``hit``, answering plain tuples
    (``RateLimiter._plain_hit``), when the rule is plain (a rate limiter on a
    synchronous store, counting every request, rejecting), else None;
    ``headers`` makes a decision's ASGI rate headers, and ``sender`` adds them to
    the response (both None: no headers); ``peer_keyed``: the key is the socket
    peer's (``by_ip``, no trusted proxies).
    """

    rule_index: int
    hit: Callable[[str], DecisionTuple] | None
    headers: Callable[[DecisionTuple], RawHeaders] | None
    peer_keyed: bool
    sender: Sender | None


class Core:
    """Rules, limiters and headers, for one middleware instance."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        store: Any = None,
        trusted_proxies: Iterable[str] = (),
        headers: HeaderStyle = "ietf",
        exempt: Sequence[str] = (),
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if headers not in ("ietf", "legacy", "both", "none"):
            raise ValueError(f"headers must be ietf, legacy, both or none, not {headers!r}")
        self.rules = list(rules)
        self.headers = headers
        self.exempt = tuple(exempt)
        self._exempt = tuple(glob(p) for p in self.exempt)
        # The memo of :meth:`route`: its key -> the Route, or None. The key is the path
        # alone when no rule names methods (the route cannot depend on the method:
        # one lookup of a string, no tuple), else (method, path).
        self.routes: dict[str | tuple[str, str], Route | None] = {}
        self.client_ip = ClientIP(trusted_proxies)
        self.limiters: list[RateLimiter | ConcurrencyLimiter] = []
        for i, rule in enumerate(self.rules):
            if rule.limiter is not None:
                self.limiters.append(rule.limiter)
            else:
                assert rule.rates is not None
                name = rule.name or f"rule{i}:{rule.path}"
                lim = RateLimiter(name, rule.rates, algorithm=rule.algorithm, store=store,
                                  clock=clock, registry=registry)  # fmt: skip
                self.limiters.append(lim)
        self.excess: dict[tuple[int, str], int] = {}
        self.policy_headers = [self._policy(lim) for lim in self.limiters]
        self._policy_raw = [p.encode("latin-1") for p in self.policy_headers]
        # Per limiter: the quoted policy item of each rate, and rate -> its position.
        self._items = [
            [f'"{_token(lim.name)}-{i}"' for i in range(len(lim.rates))]
            if isinstance(lim, RateLimiter) else [] for lim in self.limiters
        ]  # fmt: skip
        self._raw_items = [[item.encode("latin-1") for item in items] for items in self._items]
        self._positions = [
            {id(r): i for i, r in enumerate(lim.rates)} if isinstance(lim, RateLimiter) else {}
            for lim in self.limiters
        ]
        self.rule_routes = [self._route(i) for i in range(len(self.rules))]
        self.by_path = not any(rule.methods for rule in self.rules)

    def _route(self, index: int) -> Route:
        rule, limiter = self.rules[index], self.limiters[index]
        hit = None
        if (isinstance(limiter, RateLimiter) and not limiter.store.is_async
                and rule.count == "all" and rule.mode == "reject"):  # fmt: skip
            hit = limiter._plain_hit()
        peer_keyed = rule.key is by_ip and not self.client_ip.trusted_proxies
        headers = self._raw_headers(index)
        return Route(index, hit, headers, peer_keyed, self._sender(index, headers))

    def route(self, method: str, path: str) -> Route | None:
        """The route of the first rule for the request (None: exempt or no rule)."""
        memo = path if self.by_path else (method, path)
        if memo in self.routes:
            return self.routes[memo]
        index = self._match(method, path)
        found = None if index is None else self.rule_routes[index]
        if len(path) <= 256:  # a bounded memo: most services serve a few hundred paths
            if len(self.routes) >= 4096:
                self.routes.clear()
            self.routes[memo] = found
        return found

    def _match(self, method: str, path: str) -> int | None:
        for test in self._exempt:
            if test(path):
                return None
        for i, rule in enumerate(self.rules):
            if rule.matches(method, path):
                return i
        return None

    def key(self, index: int, method: str, path: str, peer: str | None,
            headers: Callable[[], Headers], raw: Any) -> str | None:  # fmt: skip
        """The key of rule ``index`` for the request (None: not limited). Routes that
        are ``peer_keyed`` need no request: their key is ``ip_key(peer)``."""
        return self.rules[index].key(self.request(method, path, headers, peer, raw))

    def request(self, method: str, path: str, headers: Callable[[], Headers],
                peer: str | None, raw: Any) -> Request:  # fmt: skip
        """The request a key function sees; headers are built only if something reads
        them (a key function, or a trusted proxy's forwarding headers)."""
        req = Request(method, path, headers, None, raw)
        req.client_ip = self.client_ip.resolve(peer, lambda: req.headers)
        return req

    @staticmethod
    def _policy(limiter: Any) -> str:
        if not isinstance(limiter, RateLimiter):
            return ""
        parts = []
        for i, r in enumerate(limiter.rates):
            w = int(r.per) if r.per == int(r.per) else r.per
            parts.append(f'"{_token(limiter.name)}-{i}";q={r.limit};w={w}')
        return ", ".join(parts)

    def _position(self, index: int, d: DecisionTuple) -> int:
        rate = d[5]
        i = self._positions[index].get(id(rate))
        if i is None:
            i = self.limiters[index].rates.index(rate)  # type: ignore[union-attr]
        return i

    def _item(self, index: int, d: DecisionTuple) -> str:
        """The ``RateLimit`` field value for the decision's rate."""
        _, _, remaining, reset_after, _, _ = d
        item = self._items[index][self._position(index, d)]
        return f"{item};r={remaining};t={whole_seconds(reset_after)}"

    def _raw_headers(self, index: int) -> Callable[[DecisionTuple], RawHeaders] | None:
        """:meth:`rate_headers` as ASGI header pairs, for rule ``index``."""
        if self.headers == "none" or not self._items[index]:
            return None

        def general(d: DecisionTuple) -> RawHeaders:
            return [(k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in self.rate_headers(index, d)]  # fmt: skip

        return general

    def _sender(self, index: int, headers: Callable[[DecisionTuple], RawHeaders] | None
                ) -> Sender | None:  # fmt: skip
        """The ASGI send wrapper of rule ``index`` (None: no headers). The message is
        copied, never changed: an app may send one dict twice. The default style of
        a one-rate limiter formats its ``RateLimit`` value from a template, in place."""
        if headers is None:
            return None
        items = self._raw_items[index]
        if self.headers == "ietf" and len(items) == 1:
            policy = (b"ratelimit-policy", self._policy_raw[index])
            template = items[0] + b";r=%d;t=%d"
            # The last header formatted, as (remaining, reset, header): every key that
            # is not bursting gets the same figures from a GCRA limiter (a full quota
            # but one), and formatting two numbers costs more than comparing them.
            last = [(-1, -1, (b"ratelimit", b""))]  # no decision has -1 left

            def one(bound: tuple[Send, DecisionTuple], message: Message) -> Awaitable[None]:
                send, d = bound
                if message["type"] == "http.response.start":
                    left, reset = d[2], ceil(d[3] - FUZZ)  # d.remaining, d.reset_after
                    if reset < 0:
                        reset = 0
                    was_left, was_reset, header = last[0]
                    if left != was_left or reset != was_reset:
                        header = (b"ratelimit", template % (left, reset))
                        last[0] = (left, reset, header)
                    message = {**message}
                    message["headers"] = [*message.get("headers", ()), policy, header]
                return send(message)

            return one

        def general(bound: tuple[Send, DecisionTuple], message: Message) -> Awaitable[None]:
            send, d = bound
            if message["type"] == "http.response.start":
                message = {**message}
                message["headers"] = [*message.get("headers", ()), *headers(d)]
            return send(message)

        return general

    def rate_headers(self, index: int, d: DecisionTuple | None) -> list[tuple[str, str]]:
        """The rate headers of decision ``d`` (a ``Decision`` or its plain tuple)."""
        if d is None or self.headers == "none":
            return []
        out: list[tuple[str, str]] = []
        _, limit, remaining, reset_after, _, _ = d
        reset = whole_seconds(reset_after)
        if self.headers in ("ietf", "both") and self._items[index]:
            out.append(("RateLimit-Policy", self.policy_headers[index]))
            out.append(("RateLimit", self._item(index, d)))
        if self.headers in ("legacy", "both"):
            out += [("X-RateLimit-Limit", str(limit)),
                    ("X-RateLimit-Remaining", str(remaining)),
                    ("X-RateLimit-Reset", str(reset))]  # fmt: skip
        return out

    def rejection(self, index: int, d: DecisionTuple | None, retry_after: float
                  ) -> tuple[list[tuple[str, str]], dict[str, Any]]:  # fmt: skip
        retry = max(1, whole_seconds(retry_after))
        headers = [("Retry-After", str(retry)), *self.rate_headers(index, d)]
        body = {"type": QUOTA_EXCEEDED, "detail": "too many requests; retry later",
                "retry_after": retry}  # fmt: skip
        return headers, body

    def next_delay(self, index: int, key: str) -> float:
        rule = self.rules[index]
        n = self.excess.get((index, key), 0) + 1
        if len(self.excess) > 100_000:
            self.excess.clear()  # bounded memory under a key scan
        self.excess[(index, key)] = n
        self.limiters[index].counts.add("delayed")
        return min(rule.delay * n, rule.max_delay)

    def allowed(self, index: int, key: str) -> None:
        if self.excess:
            self.excess.pop((index, key), None)

    def counts_status(self, index: int, status: int) -> bool:
        count = self.rules[index].count
        return status >= 400 if count == "failures" else status < 400


def _token(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:/" else "_" for c in name)


class IPFilter:
    """Allow and deny lists of networks, globally and per path glob."""

    def __init__(
        self,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        rules: Mapping[str, Iterable[str]] | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.allow = _nets(allow, "allow")
        self.deny = _nets(deny, "deny")
        self.rules = [(glob(g), _nets(nets, g)) for g, nets in (rules or {}).items()]
        self.client_ip = ClientIP(trusted_proxies)

    def permits(self, path: str, headers: Headers | Callable[[], Headers], peer: str | None
                ) -> bool:  # fmt: skip
        """``headers`` may be a function making them (called only behind trusted proxies)."""
        ip = self.client_ip.resolve(peer, headers)
        addr = parse_ip(ip) if ip else None
        if addr is None:
            return not (self.allow or self.rules)  # unknown client: only if nothing is required
        if any(_within(addr, n) for n in self.deny):
            return False
        if self.allow and not any(_within(addr, n) for n in self.allow):
            return False
        for test, nets in self.rules:
            if test(path):
                return any(_within(addr, n) for n in nets)
        return True


def _within(addr: Any, net: IPNetwork) -> bool:
    return bool(addr.version == net.version and addr in net)


def _nets(values: Iterable[str], what: str) -> list[IPNetwork]:
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{what}: not a network in CIDR form: {v!r}") from None
    return out
