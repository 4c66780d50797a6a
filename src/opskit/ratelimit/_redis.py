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


def _gcra1_source(rate: Rate, ttl: float) -> str:
    """The common case, one GCRA rate, with the rate's constants written into the
    script: the call sends one key and no arguments (``ARGV[1]``: a cost other than
    1; ``ARGV[2]``: ``'0'`` to peek). The key holds the theoretical arrival time.

    Numbers handed to ``redis.call`` are formatted on every call (about 1.5 µs
    each), so the TTL is written in as a string.

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
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local us = math.ceil((tat - now) * 1000000)
if tat - now + step <= {ceiling!r} then
  if ARGV[2] ~= '0' then
    redis.call('SET', KEYS[1], tat + step, 'PX', '{int(ttl * 1000) + 1}')
  end
  return us
end
return -1 - us
"""
    )


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


def _fixed1_packing(rate: Rate) -> tuple[int, float] | None:
    """How the one-rate fixed window script packs its reply into one integer: the
    count times ``span`` plus the time into the window in units of ``1/unit`` s
    (µs, else ms), exact below 2**53. None when neither fits: the general script."""
    for unit in (1e6, 1e3):
        span = math.ceil(rate.per * unit) + 1
        if (rate.limit + 1) * span < 2**53:
            return span, unit
    return None


def _window1_source(algorithm: str, rate: Rate, ttl: float,
                    packing: tuple[int, float] | None) -> str:  # fmt: skip
    """One fixed or sliding window rate, its constants written in like GCRA's. The
    key holds ``"window:count"`` (fixed) or ``"window:previous:current"`` (sliding),
    windows numbered from the server clock, so a key left from an earlier window
    reads as empty (or as the previous window) whenever it expires.

    The client works out the decision's figures from what the script saw, with the
    memory path's arithmetic (:func:`_window1_decision`). The fixed window replies
    one integer (:func:`_fixed1_packing`; ``-1 -`` it when denied); the sliding
    window ``"<1|0> <previous> <current> <elapsed>"``, the whole microseconds since
    the window began, which the script also decides with, so that the client's
    estimate (the same division of the same integer) is the script's exactly.
    """
    limit, per = rate.limit, float(rate.per)
    if algorithm == "fixed_window":
        assert packing is not None  # a fixed window that does not pack runs the general script
        span, unit = packing
        read = f"""{_READ_FIXED}local ok = count + cost <= {limit}
local new = w .. ':' .. (count + cost)"""
        reply = f"""local r = count * {span} + math.floor(elapsed * {unit!r})
if ok then return r end
return -1 - r"""
    else:
        read = f"""{_READ_SLIDING}local us = math.floor(elapsed * 1000000)
elapsed = us / 1000000
local estimate = prev * (1 - elapsed / {per!r}) + curr
local ok = estimate + cost <= {limit} + 1e-9
local new = w .. ':' .. prev .. ':' .. (curr + cost)"""
        reply = """return (ok and '1 ' or '0 ') .. prev .. ' ' .. curr .. ' ' .. us"""
    return f"""-- opskit.ratelimit {algorithm} {rate}
{LUA_NOW}local cost = 1
if ARGV[1] then cost = tonumber(ARGV[1]) end
local w = math.floor(now / {per!r})
local elapsed = now - w * {per!r}
local raw = redis.call('GET', KEYS[1])
{read}
if ok and ARGV[2] ~= '0' then
  redis.call('SET', KEYS[1], new, 'PX', '{int(ttl * 1000) + 1}')
end
{reply}
"""


def _one_rate_script(algorithm: str, rate: Rate, ttl: float
                     ) -> tuple[Script, Callable[[Any, int], Decision]] | None:  # fmt: skip
    """The written-in script for one rate and the reader of its reply (None: the general
    script serves the rate, a fixed window whose reply would not fit an integer)."""
    if algorithm == "gcra":
        script = Script(_gcra1_source(rate, ttl))
        return script, lambda reply, cost: _gcra1_decision(reply, rate, cost)
    packing = _fixed1_packing(rate) if algorithm == "fixed_window" else None
    if algorithm == "fixed_window" and packing is None:
        return None
    script = Script(_window1_source(algorithm, rate, ttl, packing))
    return script, lambda reply, cost: _window1_decision(reply, algorithm, rate, cost, packing)


def _window1_decision(reply: Any, algorithm: str, rate: Rate, cost: int,
                      packing: tuple[int, float] | None) -> Decision:  # fmt: skip
    """The script's decision with its figures from :func:`_algo.decide_one`, run on
    the same counts at the same offset into the window (so it reaches the same
    verdict; the window is 0 unless rounding put the offset on an edge)."""
    if algorithm == "fixed_window":
        assert packing is not None
        span, unit = packing
        allowed = reply >= 0
        count, units = divmod(reply if allowed else -1 - reply, span)
        elapsed = units / unit
        state: tuple[float, ...] = (math.floor(elapsed / rate.per), count)
    else:
        parts = reply.split()
        allowed, elapsed = parts[0] == b"1", int(parts[3]) / 1e6  # the script's double
        state = (math.floor(elapsed / rate.per), int(parts[1]), int(parts[2]))
    _, remaining, reset, retry, _ = decide_one(algorithm, rate, state, elapsed, cost)
    return _new(Decision, (allowed, rate.limit, remaining, reset, retry, rate))


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
