from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

from opskit._core.redis import (
    LUA_NOW,
    OutageTracker,
    RedisError,
    Script,
    is_async_client,
    tagged_key,
    validate_on_error,
)
from opskit.ratelimit._algo import Decision, decide, decide_one, most_restrictive
from opskit.ratelimit._memory import MemoryStore
from opskit.ratelimit._rate import Rate

# The scripts keep their state as little-endian doubles packed with Lua's ``struct``
# (exact, and several times cheaper than formatting and parsing numbers as text):
# per rate, GCRA the arrival time, a fixed window ``(window, count)``, a sliding
# window ``(window, previous, current)``. A value of any other length reads as empty.
_GCRA_STATE, _FIXED_STATE, _SLIDING_STATE = "<d", "<dd", "<ddd"


def _gcra1_source(rate: Rate, ttl: float) -> str:
    """The common case, one GCRA rate, with the rate's constants written into the
    script: the call sends one key and no arguments (``ARGV[1]``: a cost other than
    1; ``ARGV[2]``: ``'0'`` to peek). The key holds the theoretical arrival time.

    Numbers handed to ``redis.call`` are formatted on every call (about 1.5 µs
    each), so the TTL is written in as a string and the state is packed.

    The reply is one integer, ``ceil(TAT - now)`` in microseconds before the hit
    (``TAT`` not before ``now``): itself when the hit was allowed, ``-1 -`` it when
    denied. The client derives the decision's figures from it and the rate.
    """
    interval, ceiling = rate.per / rate.limit, float(rate.per) + 1e-9
    return (
        f"-- opskit.ratelimit GCRA {rate}\n"
        + LUA_NOW
        + f"""local step = {interval!r}
if ARGV[1] then step = step * tonumber(ARGV[1]) end
local raw = redis.call('GET', KEYS[1])
local tat = now
if raw and #raw == 8 then tat = struct.unpack('{_GCRA_STATE}', raw) end
if tat < now then tat = now end
local us = math.ceil((tat - now) * 1000000)
if tat - now + step <= {ceiling!r} then
  if ARGV[2] ~= '0' then
    redis.call('SET', KEYS[1], struct.pack('{_GCRA_STATE}', tat + step), 'PX', '{_px(ttl)}')
  end
  return us
end
return -1 - us
"""
    )


def _px(ttl: float) -> str:
    return str(int(ttl * 1000) + 1)


_new = tuple.__new__  # a Decision without the namedtuple's Python-level __new__


def _gcra_decision(rate: Rate, reply: int, cost: int) -> Decision:
    """The decision for the offset a GCRA script replied for ``rate``, as the memory
    path would give it (microseconds rounded up: remaining is never overstated)."""
    limit, per = rate.limit, rate.per
    interval = per / limit
    if reply >= 0:
        used = reply / 1e6 + cost * interval
        left = int((per - used) / interval + 1e-9)
        return _new(Decision, (True, limit, left if left > 0 else 0, used, 0.0, rate))
    ahead = (-1 - reply) / 1e6
    left = max(0, math.floor((per - ahead) / interval + 1e-9))
    return _new(Decision, (False, limit, left, ahead, max(0.0, ahead + cost * interval - per),
                           rate))  # fmt: skip


def _packing(rate: Rate) -> tuple[int, int] | None:
    """How a window script packs a count (at most the limit) and the time into the
    window into one integer reply: ``count * span + units``, the time in µs, else in
    ms (``units // divisor`` of the whole µs), exact below 2**53. None when neither
    fits (a fixed window then runs the n-rate script, a sliding window replies text)."""
    for divisor in (1, 1000):
        span = math.ceil(rate.per * 1e6 / divisor) + 1
        if (rate.limit + 1) * span < 2**53:
            return span, divisor
    return None


def _fixed1_source(rate: Rate, ttl: float, packing: tuple[int, int]) -> str:
    """One fixed window rate, its constants written in like GCRA's. Windows are
    numbered from the server clock, so a count left from an earlier window reads as
    empty whenever its key expires. The reply is one integer (:func:`_packing`: the
    count before the hit and the time into the window), ``-1 -`` it when denied."""
    per, (span, divisor) = float(rate.per), packing
    return f"""-- opskit.ratelimit fixed_window {rate}
{LUA_NOW}local cost = 1
if ARGV[1] then cost = tonumber(ARGV[1]) end
local w = math.floor(now / {per!r})
local count = 0
local raw = redis.call('GET', KEYS[1])
if raw and #raw == 16 then
  local sw, sc = struct.unpack('{_FIXED_STATE}', raw)
  if sw == w then count = sc end
end
local r = count * {span} + math.floor((now - w * {per!r}) * {1e6 / divisor!r})
if count + cost <= {rate.limit} then
  if ARGV[2] ~= '0' then
    local new = struct.pack('{_FIXED_STATE}', w, count + cost)
    redis.call('SET', KEYS[1], new, 'PX', '{_px(ttl)}')
  end
  return r
end
return -1 - r
"""


def _fixed1_decision(rate: Rate, packing: tuple[int, int], reply: int, cost: int) -> Decision:
    """The script's verdict with :func:`_algo.decide_one`'s figures for the count and
    the time into the window the script saw (the window's end: its reset and, when
    denied, its retry)."""
    span, divisor = packing
    limit = rate.limit
    if reply >= 0:
        count, units = divmod(reply, span)
        reset = rate.per - units * divisor / 1e6
        return _new(Decision, (True, limit, limit - count - cost, reset, 0.0, rate))
    count, units = divmod(-1 - reply, span)
    reset = rate.per - units * divisor / 1e6
    return _new(Decision, (False, limit, max(0, limit - count), reset, reset, rate))


def _sliding1_source(rate: Rate, ttl: float, packing: tuple[int, int] | None) -> str:
    """One sliding window rate, its constants written in. The script decides on the
    whole microseconds into the window (``us``), the same number the client gets
    its figures from.

    An allowed hit replies one integer when the rate packs (:func:`_packing`): the
    remaining count, worked out here with the arithmetic of :func:`_algo.decide_one`,
    and the time into the window. A denied hit, or an allowed one of a rate too wide
    to pack, replies ``"<1|0> <previous> <current> <us>"``.
    """
    limit, per = rate.limit, float(rate.per)
    if packing is None:
        allowed = "return string.format('1 %d %d %d', prev, curr, us)"
    else:
        span, divisor = packing
        units = "us" if divisor == 1 else f"math.floor(us / {divisor})"
        allowed = f"""local left = math.floor({limit} - estimate - cost + 1e-9)
  if left < 0 then left = 0 end
  return left * {span} + {units}"""
    return f"""-- opskit.ratelimit sliding_window {rate}
{LUA_NOW}local cost = 1
if ARGV[1] then cost = tonumber(ARGV[1]) end
local w = math.floor(now / {per!r})
local us = math.floor((now - w * {per!r}) * 1000000)
local prev, curr = 0, 0
local raw = redis.call('GET', KEYS[1])
if raw and #raw == 24 then
  local sw, sp, sc = struct.unpack('{_SLIDING_STATE}', raw)
  if sw == w then prev, curr = sp, sc elseif sw == w - 1 then prev = sc end
end
local estimate = prev * (1 - us / 1000000 / {per!r}) + curr
if estimate + cost <= {limit} + 1e-9 then
  if ARGV[2] ~= '0' then
    local new = struct.pack('{_SLIDING_STATE}', w, prev, curr + cost)
    redis.call('SET', KEYS[1], new, 'PX', '{_px(ttl)}')
  end
  {allowed}
end
return string.format('0 %d %d %d', prev, curr, us)
"""


def _sliding1_decision(rate: Rate, packing: tuple[int, int] | None, reply: Any, cost: int
                       ) -> Decision:  # fmt: skip
    """An integer: allowed, with the remaining count the script worked out, and the
    reset from the time into the window (µs or ms, floored: never understated). Text:
    the figures of :func:`_algo.decide_one` for the counts at the script's time."""
    per = rate.per
    if reply.__class__ is int:
        assert packing is not None
        span, divisor = packing
        left, units = divmod(reply, span)
        elapsed = units * divisor / 1e6
        return _new(Decision, (True, rate.limit, left, (per - elapsed) + per, 0.0, rate))
    flag, prev, curr, us = reply.split()
    elapsed = int(us) / 1e6  # the script's double
    state = (math.floor(elapsed / per), int(prev), int(curr))
    _, remaining, reset, retry, _ = decide_one("sliding_window", rate, state, elapsed, cost)
    return _new(Decision, (int(flag) == 1, rate.limit, remaining, reset, retry, rate))


_WIDTH = {"gcra": 1, "fixed_window": 2, "sliding_window": 3}  # doubles per rate


def _rate_lua(algorithm: str, i: int, rate: Rate) -> str:
    """Rate ``i``'s check (``s``: the stored values, ``new``: the values to keep,
    both flat with :data:`_WIDTH` per rate; ``r``: GCRA's reply per rate). The
    windows are :func:`_algo.decide_one`'s arithmetic operation for operation."""
    L, P, k = rate.limit, float(rate.per), _WIDTH[algorithm] * i
    if algorithm == "gcra":  # as in the one-rate script
        return f"""do
  local tat = now
  if s then tat = s[{k + 1}] end
  if tat < now then tat = now end
  local step, us = cost * {rate.per / rate.limit!r}, math.ceil((tat - now) * 1000000)
  if tat - now + step <= {P!r} + 1e-9 then
    new[{k + 1}], r[{k + 1}] = tat + step, us
  else
    ok, r[{k + 1}] = false, -1 - us
  end
end
"""
    if algorithm == "fixed_window":
        return f"""do
  local w = math.floor(now / {P!r})
  local c = 0
  if s and s[{k + 1}] == w then c = s[{k + 2}] end
  if c + cost <= {L} then new[{k + 1}], new[{k + 2}] = w, c + cost else ok = false end
end
"""
    return f"""do
  local w = math.floor(now / {P!r})
  local prev, curr = 0, 0
  if s then
    if s[{k + 1}] == w then prev, curr = s[{k + 2}], s[{k + 3}]
    elseif s[{k + 1}] == w - 1 then prev = s[{k + 3}] end
  end
  local elapsed = now - w * {P!r}
  local estimate = prev * (1.0 - elapsed / {P!r}) + curr
  if estimate + cost <= {L} + 1e-9 then
    new[{k + 1}], new[{k + 2}], new[{k + 3}] = w, prev, curr + cost
  else
    ok = false
  end
end
"""


def _rates_source(algorithm: str, rates: Sequence[Rate], ttl: float) -> str:
    """Any number of rates of one algorithm, their constants written in (``ARGV`` as
    in the one-rate scripts). One key holds every rate's state as packed doubles.
    The reply is integers in text (formatting a double takes a microsecond, an
    integer a tenth of that):

    - GCRA: each rate's offset as in the one-rate script, ``-1 -`` it when the rate
      denies; the client takes each rate's figures from it (:func:`_gcra_decision`).
    - Windows: ``"<1|0> <µs> <stored values...>"`` (no stored values when the key
      held none). The script decides at whole microseconds, ``now = µs / 10**6``, so
      the client runs :func:`_algo.decide` on the very numbers the script decided
      with: its figures, and the rate it reports, are the memory path's exactly.
    """
    width = _WIDTH[algorithm] * len(rates)
    layout = "<" + "d" * width
    checks = "".join(_rate_lua(algorithm, i, r) for i, r in enumerate(rates))
    if algorithm == "gcra":
        start, reply = (
            "local r = {}\n",
            f"return string.format('{' '.join(['%d'] * width)}', unpack(r))",
        )
    else:
        start = "local us = math.floor(now * 1000000)\nnow = us / 1000000\n"
        reply = f"""if s then
  return string.format('%d %d{" %d" * width}', ok and 1 or 0, us, unpack(s, 1, {width}))
end
return string.format('%d %d', ok and 1 or 0, us)"""
    return f"""-- opskit.ratelimit {algorithm} {" ".join(map(str, rates))}
{LUA_NOW}{start}local cost = 1
if ARGV[1] then cost = tonumber(ARGV[1]) end
local raw = redis.call('GET', KEYS[1])
local s = nil
if raw and #raw == {8 * width} then s = {{struct.unpack('{layout}', raw)}} end
local ok, new = true, {{}}
{checks}if ok and ARGV[2] ~= '0' then
  redis.call('SET', KEYS[1], struct.pack('{layout}', unpack(new)), 'PX', '{_px(ttl)}')
end
{reply}
"""


def _rates_decision(algorithm: str, rates: Sequence[Rate], reply: Any, cost: int) -> Decision:
    """The decision from the n-rate script's reply (bytes, or str from a client that
    decodes responses)."""
    parts = reply.split()
    if algorithm == "gcra":
        each = [_gcra_decision(rate, int(p), cost) for p, rate in zip(parts, rates, strict=True)]
        return most_restrictive(rates, [(d[0], d[2], d[3], d[4]) for d in each])
    width = _WIDTH[algorithm]
    states: list[tuple[int, ...] | None] = [None] * len(rates)
    if len(parts) > 2:
        values = [int(v) for v in parts[2:]]
        states = [tuple(values[i : i + width]) for i in range(0, len(values), width)]
    decision, _ = decide(algorithm, rates, states, int(parts[1]) / 1e6, cost)
    allowed = int(parts[0]) == 1
    return decision if decision.allowed == allowed else decision._replace(allowed=allowed)


def _gcra_rates_decision(rates: Sequence[Rate], figures: Sequence[tuple[float, float]],
                         reply: Any, cost: int) -> Decision:  # fmt: skip
    """:func:`_rates_decision` for GCRA, the allowed case without a decision per rate:
    the rate with the fewest remaining (the longest reset on a tie), as
    :func:`_algo.most_restrictive` picks it. ``figures``: each rate's period and
    interval."""
    offsets = list(map(int, reply.split()))
    if min(offsets) < 0:  # denied by some rate
        return _rates_decision("gcra", rates, reply, cost)
    pick, best_left, best_used = 0, -1, 0.0
    for i, (per, interval) in enumerate(figures):
        used = offsets[i] / 1e6 + cost * interval
        left = int((per - used) / interval + 1e-9)
        if left < 0:
            left = 0
        if best_left < 0 or left < best_left or (left == best_left and used > best_used):
            pick, best_left, best_used = i, left, used
    rate = rates[pick]
    return _new(Decision, (True, rate.limit, best_left, best_used, 0.0, rate))


_Reader = Callable[[Any, int], Decision]  # a script's reply and the cost -> the decision
# A script, the reader of its reply, the key suffix of its layout.
_Plan = tuple[Script, _Reader, str]
_Failed = Callable[[RedisError, str, int], Decision]  # a Redis error, the key, the cost


def _plan(algorithm: str, rates: tuple[Rate, ...], ttl: float) -> _Plan:
    """One rate runs its tuned script (integer replies) where there is one; anything
    else, several rates or a fixed window too wide to pack, the n-rate script.
    Limiters that share a name but not an algorithm or a layout never read each
    other's state."""
    # The readers are partials (a C call) of functions taking ``reply, cost`` last.
    if len(rates) == 1:
        rate = rates[0]
        if algorithm == "gcra":
            return Script(_gcra1_source(rate, ttl)), partial(_gcra_decision, rate), "#g"
        packing = _packing(rate)
        if algorithm == "sliding_window":
            script = Script(_sliding1_source(rate, ttl, packing))
            return script, partial(_sliding1_decision, rate, packing), "#s1"
        if packing is not None:
            script = Script(_fixed1_source(rate, ttl, packing))
            return script, partial(_fixed1_decision, rate, packing), "#f1"
    script = Script(_rates_source(algorithm, rates, ttl))
    if algorithm == "gcra":
        figures = tuple((r.per, r.per / r.limit) for r in rates)
        return script, partial(_gcra_rates_decision, rates, figures), _SUFFIX[algorithm]
    return script, partial(_rates_decision, algorithm, rates), _SUFFIX[algorithm]


# KEYS[1]: the slots' sorted set (score = lease expiry). ARGV: slot id, limit, lease seconds
_ACQUIRE_SLOT = Script(
    LUA_NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tostring(now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tostring(now + tonumber(ARGV[3])), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000) + 1000)
return 1
"""
)

_MAX_KEY = 128
_SUFFIX = {"gcra": "", "fixed_window": "#f", "sliding_window": "#s"}  # the n-rate layouts
_SUFFIXES = ("#g", "#f1", "#s1", *_SUFFIX.values())  # every layout, for reset


class RedisStore:
    """Shared limiter state in Redis or Redis Cluster.

    One Lua script, one round trip per decision whatever the number of rates;
    time from the Redis server's ``TIME``; the keys of one decision under one
    hash tag; user keys longer than 128 bytes are hashed. ``client`` may be a
    ``redis.Redis``, a ``RedisCluster`` (use the limiter's sync methods) or a
    ``redis.asyncio`` client (use ``ahit`` / ``aacquire`` / ``aslot``: the event
    loop is never blocked). When Redis fails, ``on_error`` decides: ``"local"``
    (default: keep limiting in-process), ``"allow"``, ``"deny"`` or ``"raise"``.
    """

    def __init__(self, client: Any, *, prefix: str = "opskit:rl:", on_error: str = "local"
                 ) -> None:  # fmt: skip
        self.client = client
        self.prefix = prefix
        self.on_error = validate_on_error(on_error)
        self.is_async = is_async_client(client)
        self.local = MemoryStore()
        self.tracker = OutageTracker("ratelimit", "RedisStore")
        # Decisions allowed by on_error="allow" while Redis failed, per limiter name
        # (the outage path only: the hot path never touches them).
        self.fail_open: dict[str, int] = {}
        self._fail_open_lock = threading.Lock()
        self._plans: dict[tuple[str, tuple[Rate, ...], float], _Plan] = {}

    def key(self, name: str, key: str, kind: str = "") -> str:
        if len(key) > _MAX_KEY // 4:  # may be longer than 128 bytes in UTF-8
            raw = key.encode("utf-8", "surrogatepass")
            if len(raw) > _MAX_KEY:
                key = "sha256:" + hashlib.sha256(raw).hexdigest()
        whole = f"{name}{kind}:{key}"
        if "{" in whole or "}" in whole or "%" in whole:
            return tagged_key(self.prefix, whole)
        return f"{self.prefix}{{{whole}}}"  # the same key tagged_key builds, without escaping

    def _failed_open(self, name: str) -> None:
        with self._fail_open_lock:
            self.fail_open[name] = self.fail_open.get(name, 0) + 1

    def _fallback(self, exc: BaseException, name: str, rates: Sequence[Rate], local: Any
                  ) -> Decision:  # fmt: skip
        self.tracker.failed(exc, self.on_error)
        policy = self.on_error
        if policy == "raise":
            raise exc
        rate = rates[0]
        if policy == "allow":
            self._failed_open(name)
            return Decision(True, rate.limit, rate.limit, 0.0, 0.0, rate)
        if policy == "deny":
            return Decision(False, rate.limit, 0, rate.per, rate.per, rate)
        return local()  # type: ignore[no-any-return]

    def _plan(self, algorithm: str, rates: tuple[Rate, ...], ttl: float) -> _Plan:
        spec = (algorithm, rates, ttl)
        plan = self._plans.get(spec)
        if plan is None:
            if len(self._plans) > 256:
                self._plans.clear()
            plan = self._plans[spec] = _plan(algorithm, rates, ttl)
        return plan

    def _call(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
              ttl: float, commit: bool
              ) -> tuple[Script, list[str], list[str], Callable[[Any], Decision]]:  # fmt: skip
        script, decode, suffix = self._plan(algorithm, tuple(rates), ttl)
        args = [] if cost == 1 and commit else [str(cost), "1" if commit else "0"]
        return script, [self.key(name, key, suffix)], args, lambda reply: decode(reply, cost)

    def hit(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
            now: float, ttl: float, *, commit: bool = True) -> Decision:  # fmt: skip
        script, keys, args, decode = self._call(name, key, algorithm, rates, cost, ttl, commit)
        try:
            reply = script.run(self.client, keys, args)
        except RedisError as exc:
            return self._fallback(exc, name, rates, lambda: self.local.hit(
                name, key, algorithm, rates, cost, now, ttl, commit=commit))  # fmt: skip
        self.tracker.ok()
        return decode(reply)

    async def ahit(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
                   now: float, ttl: float, *, commit: bool = True) -> Decision:  # fmt: skip
        script, keys, args, decode = self._call(name, key, algorithm, rates, cost, ttl, commit)
        try:
            reply = await script.arun(self.client, keys, args)
        except RedisError as exc:
            return self._fallback(exc, name, rates, lambda: self.local.hit(
                name, key, algorithm, rates, cost, now, ttl, commit=commit))  # fmt: skip
        self.tracker.ok()
        return decode(reply)

    def _key_of(self, name: str, suffix: str) -> Callable[[str], str]:
        """``key(name, k, suffix)`` as a function of ``k``: a key short enough and free
        of braces and percent signs (most keys) is one concatenation."""
        whole, key = f"{name}{suffix}:", self.key
        if "{" in whole or "}" in whole or "%" in whole:
            return lambda k: key(name, k, suffix)
        head, short = f"{self.prefix}{{{whole}", _MAX_KEY // 4

        def key_of(k: str) -> str:
            if len(k) > short or "{" in k or "}" in k or "%" in k:
                return key(name, k, suffix)
            return head + k + "}"  # what self.key makes of it

        return key_of

    def _hot(self, name: str, algorithm: str, rates: tuple[Rate, ...], ttl: float,
             now: Callable[[], float], counts: tuple[Iterator[int], Iterator[int]]
             ) -> tuple[Script, Callable[[str], str], _Reader, _Failed]:  # fmt: skip
        """What :meth:`planned` and :meth:`aplanned` bind: the script, the key maker,
        the decision of a reply and that of a Redis error (``on_error``), each
        advancing ``counts`` (the limiter's allowed and limited counters)."""
        script, decode, suffix = self._plan(algorithm, rates, ttl)
        local, tracker, (allowed, limited) = self.local, self.tracker, counts

        def settle(reply: Any, cost: int) -> Decision:
            if tracker.active:
                tracker.ok()
            d = decode(reply, cost)
            next(allowed if d[0] else limited)
            return d

        def failed(exc: RedisError, key: str, cost: int) -> Decision:
            d = self._fallback(exc, name, rates, lambda: local.hit(
                name, key, algorithm, rates, cost, now(), ttl))  # fmt: skip
            next(allowed if d[0] else limited)
            return d

        return script, self._key_of(name, suffix), settle, failed

    def planned(self, name: str, algorithm: str, rates: tuple[Rate, ...], ttl: float,
                now: Callable[[], float], counts: tuple[Iterator[int], Iterator[int]],
                check: Callable[[int], int]) -> Callable[..., Decision]:  # fmt: skip
        """A limiter's ``hit`` on a synchronous client, with everything that depends
        on neither key nor cost looked up once: ``counts`` are its allowed and
        limited counters, ``check`` vets a cost other than 1."""
        script, key_of, settle, failed = self._hot(name, algorithm, rates, ttl, now, counts)
        run = script.bound(self.client, 1)

        def hit(key: str, cost: int = 1) -> Decision:
            if cost != 1:
                cost = check(cost)
            try:
                reply = run(key_of(key)) if cost == 1 else run(key_of(key), str(cost))
            except RedisError as exc:
                return failed(exc, key, cost)
            return settle(reply, cost)

        return hit

    def aplanned(self, name: str, algorithm: str, rates: tuple[Rate, ...], ttl: float,
                 now: Callable[[], float], counts: tuple[Iterator[int], Iterator[int]],
                 check: Callable[[int], int]) -> Callable[..., Awaitable[Decision]]:  # fmt: skip
        """:meth:`planned` for an asyncio client: the limiter's ``ahit``."""
        script, key_of, settle, failed = self._hot(name, algorithm, rates, ttl, now, counts)
        run = script.abound(self.client, 1)

        async def ahit(key: str, cost: int = 1) -> Decision:
            if cost != 1:
                cost = check(cost)
            try:
                reply = await (run(key_of(key)) if cost == 1 else run(key_of(key), str(cost)))
            except RedisError as exc:
                return failed(exc, key, cost)
            return settle(reply, cost)

        return ahit

    def _all_keys(self, name: str, key: str) -> list[str]:
        """Every key a limiter of this name may keep for ``key`` (one per layout)."""
        return [self.key(name, key, suffix) for suffix in _SUFFIXES]

    def reset(self, name: str, key: str) -> None:
        self.local.reset(name, key)
        try:
            self.client.delete(*self._all_keys(name, key))
        except RedisError as exc:
            self.tracker.failed(exc, self.on_error)
            if self.on_error == "raise":
                raise

    async def areset(self, name: str, key: str) -> None:
        self.local.reset(name, key)
        try:
            await self.client.delete(*self._all_keys(name, key))
        except RedisError as exc:
            self.tracker.failed(exc, self.on_error)
            if self.on_error == "raise":
                raise

    # -- concurrency slots -------------------------------------------------------------

    def _slot_fallback(self, exc: BaseException, name: str, local: Any) -> bool:
        self.tracker.failed(exc, self.on_error)
        if self.on_error == "raise":
            raise exc
        if self.on_error == "allow":
            self._failed_open(name)
            return True
        if self.on_error == "deny":
            return False
        return bool(local())

    def acquire_slot(self, name: str, key: str, slot: str, limit: int, lease: float,
                     now: float) -> bool:  # fmt: skip
        try:
            got = _ACQUIRE_SLOT.run(self.client, [self.key(name, key, "#slots")],
                                    [slot, str(limit), repr(lease)])  # fmt: skip
        except RedisError as exc:
            return self._slot_fallback(exc, name, lambda: self.local.acquire_slot(
                name, key, slot, limit, lease, now))  # fmt: skip
        self.tracker.ok()
        return bool(int(got))

    async def aacquire_slot(self, name: str, key: str, slot: str, limit: int, lease: float,
                            now: float) -> bool:  # fmt: skip
        try:
            got = await _ACQUIRE_SLOT.arun(self.client, [self.key(name, key, "#slots")],
                                           [slot, str(limit), repr(lease)])  # fmt: skip
        except RedisError as exc:
            return self._slot_fallback(exc, name, lambda: self.local.acquire_slot(
                name, key, slot, limit, lease, now))  # fmt: skip
        self.tracker.ok()
        return bool(int(got))

    def release_slot(self, name: str, key: str, slot: str) -> None:
        self.local.release_slot(name, key, slot)
        try:
            self.client.zrem(self.key(name, key, "#slots"), slot)
        except RedisError as exc:
            self.tracker.failed(exc, self.on_error)  # the lease reclaims it

    async def arelease_slot(self, name: str, key: str, slot: str) -> None:
        self.local.release_slot(name, key, slot)
        try:
            await self.client.zrem(self.key(name, key, "#slots"), slot)
        except RedisError as exc:
            self.tracker.failed(exc, self.on_error)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, on_error={self.on_error!r})"
