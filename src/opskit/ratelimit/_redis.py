from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
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
from opskit.ratelimit._algo import Decision, decide_one
from opskit.ratelimit._memory import MemoryStore
from opskit.ratelimit._rate import Rate

# Lua reading the state of window ``w`` from the stored value ``raw``: a fixed
# window's ``"window:count"``, a sliding window's ``"window:previous:current"``.
_READ_FIXED = """local count = 0
if raw then
  local sw, sc = string.match(raw, '^([^:]+):(.+)$')
  if tonumber(sw) == w then count = tonumber(sc) end
end
"""
_READ_SLIDING = """local prev, curr = 0, 0
if raw then
  local sw, sp, sc = string.match(raw, '^([^:]+):([^:]+):(.+)$')
  sw = tonumber(sw)
  if sw == w then prev, curr = tonumber(sp), tonumber(sc)
  elseif sw == w - 1 then prev = tonumber(sc) end
end
"""

# KEYS[1]: the key's hash (one field per rate).
# ARGV: algorithm, cost, commit (1|0), ttl milliseconds, n, then limit, period for each rate.
_HIT = Script(
    LUA_NOW
    + """
local alg, cost, commit = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local n = tonumber(ARGV[5])
local oks, rems, resets, retries, news = {}, {}, {}, {}, {}
local all = true
for i = 1, n do
  local L, P = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  local raw = redis.call('HGET', KEYS[1], tostring(i))
  local ok, rem, reset, retry, new = false, 0, 0, 0, nil
  if alg == 'gcra' then
    local T = P / L
    local tat = now
    if raw then tat = tonumber(raw) end
    local base = math.max(tat, now)
    local used = base + cost * T - now
    if used <= P + 1e-9 then
      ok, rem, reset = true, math.floor((P - used) / T + 1e-9), used
      new = string.format('%.17g', base + cost * T)
    else
      rem = math.max(0, math.floor((P - (base - now)) / T + 1e-9))
      reset, retry = base - now, used - P
    end
  elseif alg == 'fixed_window' then
    local w = math.floor(now / P)
-- READ FIXED
    reset = (w + 1) * P - now
    if count + cost <= L then
      ok, rem, new = true, L - count - cost, tostring(w) .. ':' .. tostring(count + cost)
    else
      rem, retry = math.max(0, L - count), reset
    end
  else
    local w = math.floor(now / P)
-- READ SLIDING
    local elapsed = now - w * P
    local estimate = prev * (1 - elapsed / P) + curr
    reset = P - elapsed
    if curr + cost > 0 then reset = reset + P end
    if estimate + cost <= L + 1e-9 then
      ok = true
      rem = math.max(0, math.floor(L - estimate - cost + 1e-9))
      new = tostring(w) .. ':' .. tostring(prev) .. ':' .. tostring(curr + cost)
    else
      local room = L - cost
      if curr <= room and prev > 0 then
        retry = P * (1 - (room - curr) / prev) - elapsed
      else
        retry = P - elapsed
        if curr > 0 then retry = retry + P * (1 - room / curr) end
      end
      retry = math.max(retry, 0)
      rem = math.max(0, math.floor(L - estimate + 1e-9))
    end
  end
  oks[i], rems[i], resets[i], retries[i], news[i] = ok, rem, reset, retry, new
  if not ok then all = false end
end
local pick = 1
for i = 2, n do
  if all then
    if rems[i] < rems[pick] or (rems[i] == rems[pick] and resets[i] > resets[pick]) then
      pick = i
    end
  else
    if retries[i] > retries[pick] or (retries[i] == retries[pick] and rems[i] < rems[pick]) then
      pick = i
    end
  end
end
local remaining = rems[pick]
if all then
  if commit then
    for i = 1, n do redis.call('HSET', KEYS[1], tostring(i), news[i]) end
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  end
else
  for i = 1, n do remaining = math.min(remaining, rems[i]) end
end
return (all and '1' or '0') .. ' ' .. pick .. ' ' .. remaining .. ' ' .. resets[pick] .. ' '
  .. retries[pick]
""".replace("-- READ FIXED\n", _READ_FIXED).replace("-- READ SLIDING\n", _READ_SLIDING)
)


# The one-rate scripts keep their state as little-endian doubles packed with Lua's
# ``struct`` (exact, and several times cheaper than formatting and parsing numbers
# as text): GCRA the arrival time, a fixed window ``(window, count)``, a sliding
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


def _gcra1_decision(reply: int, rate: Rate, cost: int) -> Decision:
    """The decision the memory path would give for the offset the script returned
    (microseconds rounded up: remaining is never overstated)."""
    limit, per = rate.limit, rate.per
    interval = per / limit
    if reply >= 0:
        used = reply / 1e6 + cost * interval
        left = max(0, int((per - used) / interval + 1e-9))
        return _new(Decision, (True, limit, left, used, 0.0, rate))
    ahead = (-1 - reply) / 1e6
    left = max(0, math.floor((per - ahead) / interval + 1e-9))
    return _new(
        Decision, (False, limit, left, ahead, max(0.0, ahead + cost * interval - per), rate)
    )


def _packing(rate: Rate) -> tuple[int, int] | None:
    """How a window script packs a count (at most the limit) and the time into the
    window into one integer reply: ``count * span + units``, the time in µs, else in
    ms (``units // divisor`` of the whole µs), exact below 2**53. None when neither
    fits (a fixed window then runs the general script, a sliding window replies text)."""
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


def _fixed1_decision(reply: int, rate: Rate, cost: int, packing: tuple[int, int]) -> Decision:
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


def _sliding1_decision(reply: Any, rate: Rate, cost: int, packing: tuple[int, int] | None
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
    return _new(Decision, (flag == b"1", rate.limit, remaining, reset, retry, rate))


def _one_rate_script(algorithm: str, rate: Rate, ttl: float
                     ) -> tuple[Script, Callable[[Any, int], Decision]] | None:  # fmt: skip
    """The written-in script for one rate and the reader of its reply (None: the general
    script serves the rate, a fixed window whose reply would not fit an integer)."""
    if algorithm == "gcra":
        script = Script(_gcra1_source(rate, ttl))
        return script, lambda reply, cost: _gcra1_decision(reply, rate, cost)
    packing = _packing(rate)
    if algorithm == "sliding_window":
        script = Script(_sliding1_source(rate, ttl, packing))
        return script, lambda reply, cost: _sliding1_decision(reply, rate, cost, packing)
    if packing is None:
        return None
    fixed = packing
    script = Script(_fixed1_source(rate, ttl, fixed))
    return script, lambda reply, cost: _fixed1_decision(reply, rate, cost, fixed)


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
# The key's suffix per algorithm in the generic script, and in the one-rate scripts
# (each its own layout): limiters that share a name but not an algorithm never read
# each other's state.
_KIND = {"gcra": "", "fixed_window": "#f", "sliding_window": "#s"}
_KIND1 = {"gcra": "#g", "fixed_window": "#f1", "sliding_window": "#s1"}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


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
        self._specs: dict[tuple[Any, ...], list[str]] = {}
        self._scripts: dict[tuple[str, Rate, float],
                            tuple[Script, Callable[[Any, int], Decision]] | None] = {}  # fmt: skip

    def key(self, name: str, key: str, kind: str = "") -> str:
        if len(key) > _MAX_KEY // 4:  # may be longer than 128 bytes in UTF-8
            raw = key.encode("utf-8", "surrogatepass")
            if len(raw) > _MAX_KEY:
                key = "sha256:" + hashlib.sha256(raw).hexdigest()
        whole = f"{name}{kind}:{key}"
        if "{" in whole or "}" in whole or "%" in whole:
            return tagged_key(self.prefix, whole)
        return f"{self.prefix}{{{whole}}}"  # the same key tagged_key builds, without escaping

    @staticmethod
    def _args(algorithm: str, rates: Sequence[Rate], cost: int, ttl: float, commit: bool
              ) -> list[str]:  # fmt: skip
        args = [algorithm, str(cost), "1" if commit else "0", str(math.ceil(ttl * 1000)),
                str(len(rates))]  # fmt: skip
        for r in rates:
            args += [str(r.limit), repr(float(r.per))]
        return args

    @staticmethod
    def _decision(reply: Any, rates: Sequence[Rate]) -> Decision:
        # One space-separated string: far cheaper for redis-py to read than an array.
        reply = reply.split()
        allowed, pick = int(reply[0]), int(reply[1]) - 1
        rate = rates[pick]
        return Decision(bool(allowed), rate.limit, int(float(_text(reply[2]))),
                        float(_text(reply[3])), float(_text(reply[4])), rate)  # fmt: skip

    def _fallback(self, exc: BaseException, rates: Sequence[Rate], local: Any) -> Decision:
        self.tracker.failed(exc, self.on_error)
        policy = self.on_error
        if policy == "raise":
            raise exc
        rate = rates[0]
        if policy == "allow":
            return Decision(True, rate.limit, rate.limit, 0.0, 0.0, rate)
        if policy == "deny":
            return Decision(False, rate.limit, 0, rate.per, rate.per, rate)
        return local()  # type: ignore[no-any-return]

    def _one_rate(self, algorithm: str, rate: Rate, ttl: float
                  ) -> tuple[Script, Callable[[Any, int], Decision]] | None:  # fmt: skip
        """The script for one rate of ``algorithm`` and how to read its reply (None: the
        general script serves it: a fixed window whose reply would not fit an integer)."""
        spec = (algorithm, rate, ttl)
        if spec not in self._scripts:
            if len(self._scripts) > 256:
                self._scripts.clear()
            self._scripts[spec] = _one_rate_script(algorithm, rate, ttl)
        return self._scripts[spec]

    def _call(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
              ttl: float, commit: bool
              ) -> tuple[Script, list[str], list[str], Callable[[Any], Decision]]:  # fmt: skip
        one = self._one_rate(algorithm, rates[0], ttl) if len(rates) == 1 else None
        if one is not None:
            script, decode = one
            args = [] if cost == 1 and commit else [str(cost), "1" if commit else "0"]
            return (script, [self.key(name, key, _KIND1[algorithm])], args,
                    lambda reply: decode(reply, cost))  # fmt: skip
        spec = (name, algorithm, rates, cost, ttl, commit)
        cached = self._specs.get(spec)
        if cached is None:
            if len(self._specs) > 1024:
                self._specs.clear()
            cached = self._specs[spec] = self._args(algorithm, rates, cost, ttl, commit)
        args = cached
        keys = [self.key(name, key, _KIND[algorithm])]
        return _HIT, keys, args, lambda reply: self._decision(reply, rates)

    def hit(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
            now: float, ttl: float, *, commit: bool = True) -> Decision:  # fmt: skip
        script, keys, args, decode = self._call(name, key, algorithm, rates, cost, ttl, commit)
        try:
            reply = script.run(self.client, keys, args)
        except RedisError as exc:
            return self._fallback(exc, rates, lambda: self.local.hit(
                name, key, algorithm, rates, cost, now, ttl, commit=commit))  # fmt: skip
        self.tracker.ok()
        return decode(reply)

    async def ahit(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
                   now: float, ttl: float, *, commit: bool = True) -> Decision:  # fmt: skip
        script, keys, args, decode = self._call(name, key, algorithm, rates, cost, ttl, commit)
        try:
            reply = await script.arun(self.client, keys, args)
        except RedisError as exc:
            return self._fallback(exc, rates, lambda: self.local.hit(
                name, key, algorithm, rates, cost, now, ttl, commit=commit))  # fmt: skip
        self.tracker.ok()
        return decode(reply)

    def planned(self, name: str, algorithm: str, rate: Rate, ttl: float,
                now: Callable[[], float]) -> Callable[[str, int], Decision] | None:  # fmt: skip
        """``hit`` for one rate on a synchronous client, with the script and everything
        else that depends on neither key nor cost looked up once (None: no such plan,
        the general path serves it)."""
        one = self._one_rate(algorithm, rate, ttl)
        if one is None:
            return None
        (script, decode), client, tracker, local = one, self.client, self.tracker, self.local
        rates, kind = (rate,), _KIND1[algorithm]

        def run(key: str, cost: int) -> Decision:
            try:
                reply = script.run(client, (self.key(name, key, kind),),
                                   () if cost == 1 else (str(cost),))  # fmt: skip
            except RedisError as exc:
                return self._fallback(exc, rates, lambda: local.hit(
                    name, key, algorithm, rates, cost, now(), ttl))  # fmt: skip
            if tracker.active:
                tracker.ok()
            return decode(reply, cost)

        return run

    def _all_keys(self, name: str, key: str) -> list[str]:
        """Every key a limiter of this name may keep for ``key`` (one per layout)."""
        return [self.key(name, key, kind) for kind in (*_KIND1.values(), *_KIND.values())]

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

    def _slot_fallback(self, exc: BaseException, local: Any) -> bool:
        self.tracker.failed(exc, self.on_error)
        if self.on_error == "raise":
            raise exc
        if self.on_error == "allow":
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
            return self._slot_fallback(exc, lambda: self.local.acquire_slot(
                name, key, slot, limit, lease, now))  # fmt: skip
        self.tracker.ok()
        return bool(int(got))

    async def aacquire_slot(self, name: str, key: str, slot: str, limit: int, lease: float,
                            now: float) -> bool:  # fmt: skip
        try:
            got = await _ACQUIRE_SLOT.arun(self.client, [self.key(name, key, "#slots")],
                                           [slot, str(limit), repr(lease)])  # fmt: skip
        except RedisError as exc:
            return self._slot_fallback(exc, lambda: self.local.acquire_slot(
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
