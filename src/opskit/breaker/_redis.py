"""Fleet-wide breaker state in Redis.

Every process whose breaker has the same name shares one state. State,
open-until (Redis server time), the window and the half-open permits live in
Redis under one hash tag; every transition is one Lua script. The closed path
does no round trip per call: each process flushes its aggregated outcomes and
reads the shared state in one script call at most every ``sync_interval``.
Half-open permits are granted by Redis, so exactly ``half_open_calls`` probes
run across the whole fleet.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opskit._core.redis import (
    LUA_NOW,
    OutageTracker,
    RedisError,
    Script,
    is_async_client,
    tagged_key,
    validate_on_error,
)
from opskit._core.telemetry import Metric
from opskit.breaker._permit import _Permit
from opskit.breaker._state import State
from opskit.breaker._window import CountWindow

if TYPE_CHECKING:
    from opskit.breaker._breaker import CircuitBreaker

_DURATIONS = 16  # open_for(1..16) is sent with each script that may open

# Shared state of a breaker name nobody uses expires after a week (604800 s).
# KEYS: state hash, window hash
# ARGV: calls, failures, slow, had_success, tail_failures, failure_rate, minimum,
#       consecutive (0 = off), slow_rate (-1 = off), kind ('c'|'t'), size, buckets, durations...
_SYNC = Script(
    LUA_NOW
    + """
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
local calls, fails, slow = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if st == 'closed' then
  local c, f, s = 0, 0, 0
  if ARGV[10] == 'c' then
    local size = tonumber(ARGV[11])
    c = tonumber(redis.call('HGET', KEYS[2], 'c') or '0') + calls
    f = tonumber(redis.call('HGET', KEYS[2], 'f') or '0') + fails
    s = tonumber(redis.call('HGET', KEYS[2], 's') or '0') + slow
    if c > size then
      f = f * size / c
      s = s * size / c
      c = size
    end
    redis.call('HSET', KEYS[2], 'c', tostring(c), 'f', tostring(f), 's', tostring(s))
  else
    local n = tonumber(ARGV[12])
    local width = tonumber(ARGV[11]) / n
    local bucket = math.floor(now / width)
    if calls > 0 then
      redis.call('HINCRBY', KEYS[2], 'c:' .. bucket, calls)
      if fails > 0 then redis.call('HINCRBY', KEYS[2], 'f:' .. bucket, fails) end
      if slow > 0 then redis.call('HINCRBY', KEYS[2], 's:' .. bucket, slow) end
    end
    local all = redis.call('HGETALL', KEYS[2])
    for i = 1, #all, 2 do
      local field, value = all[i], tonumber(all[i + 1])
      local b = tonumber(string.sub(field, 3))
      if b == nil or b <= bucket - n then
        redis.call('HDEL', KEYS[2], field)
      else
        local kind = string.sub(field, 1, 1)
        if kind == 'c' then c = c + value elseif kind == 'f' then f = f + value
        elseif kind == 's' then s = s + value end
      end
    end
  end
  local streak = tonumber(redis.call('HGET', KEYS[1], 'streak') or '0')
  if tonumber(ARGV[4]) == 1 then streak = tonumber(ARGV[5])
  else streak = streak + tonumber(ARGV[5]) end
  redis.call('HSET', KEYS[1], 'streak', streak)
  local consecutive = tonumber(ARGV[8])
  local slow_rate = tonumber(ARGV[9])
  local trip = (consecutive > 0 and streak >= consecutive)
  if c >= tonumber(ARGV[7]) and c > 0 then
    if f >= tonumber(ARGV[6]) * c then trip = true end
    if slow_rate >= 0 and s >= slow_rate * c then trip = true end
  end
  if trip then
    local times = redis.call('HINCRBY', KEYS[1], 'opened', 1)
    local d = tonumber(ARGV[12 + math.min(times, #ARGV - 12)])
    redis.call('HSET', KEYS[1], 'state', 'open', 'until', tostring(now + d), 'streak', 0,
               'ok', 0, 'tripped_calls', tostring(c), 'tripped_failures', tostring(f))
    redis.call('HINCRBY', KEYS[1], 'gen', 1)
    redis.call('DEL', KEYS[2])
    st = 'open'
  end
end
redis.call('EXPIRE', KEYS[1], 604800)
redis.call('EXPIRE', KEYS[2], 604800)
local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
return {st, tostring(untl - now), redis.call('HGET', KEYS[1], 'gen') or '0'}
"""
)

# KEYS: state hash, permits zset; ARGV: half_open_calls, probe_timeout (0 = none), permit id
_ACQUIRE = Script(
    LUA_NOW
    + """
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if st ~= 'open' and st ~= 'half_open' then return {st, '0'} end
if st == 'open' then
  local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if now < untl then return {'open', tostring(untl - now)} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'ok', 0)
  redis.call('HINCRBY', KEYS[1], 'gen', 1)
  redis.call('DEL', KEYS[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tostring(now))
local timeout = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local wait = 1
  if timeout > 0 and oldest[2] then wait = tonumber(oldest[2]) - now end
  return {'full', tostring(wait)}
end
local expires = now + 315360000
if timeout > 0 then expires = now + timeout end
redis.call('ZADD', KEYS[2], tostring(expires), ARGV[3])
redis.call('EXPIRE', KEYS[2], 604800)
return {'granted', '0'}
"""
)

# KEYS: state hash, permits zset, window hash
# ARGV: permit id, outcome (0 success, 1 failure, 2 ignored), half_open_calls, durations...
_RELEASE = Script(
    LUA_NOW
    + """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return {'stale'} end
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if st ~= 'half_open' then return {st} end
local outcome = tonumber(ARGV[2])
if outcome == 1 then
  local times = redis.call('HINCRBY', KEYS[1], 'opened', 1)
  local d = tonumber(ARGV[3 + math.min(times, #ARGV - 3)])
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tostring(now + d), 'ok', 0)
  redis.call('HINCRBY', KEYS[1], 'gen', 1)
  redis.call('DEL', KEYS[2])
  return {'open', tostring(d)}
elseif outcome == 0 then
  local ok = redis.call('HINCRBY', KEYS[1], 'ok', 1)
  if ok >= tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'opened', 0, 'streak', 0, 'ok', 0)
    redis.call('HINCRBY', KEYS[1], 'gen', 1)
    redis.call('DEL', KEYS[2], KEYS[3])
    return {'closed'}
  end
end
return {'half_open'}
"""
)

# KEYS: state hash, permits zset, window hash; ARGV: state
_SET_STATE = Script(
    """
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'ok', 0, 'streak', 0)
if ARGV[1] == 'closed' then redis.call('HSET', KEYS[1], 'opened', 0) end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreakerStore:
    """Shares breaker state across processes through Redis (or Redis Cluster).

    ``client`` is a ``redis.Redis``, ``redis.asyncio.Redis`` or a Cluster client:
    use a synchronous client with synchronous code and an asyncio client with
    async code. ``on_error`` says what a breaker does while Redis fails:
    ``"local"`` (default) keeps working on its own in-process state and rejoins
    the shared state when Redis answers again; ``"raise"`` surfaces the Redis
    error to the caller; ``"allow"`` lets calls through; ``"deny"`` rejects them.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "opskit:breaker:",
        sync_interval: float = 0.5,
        on_error: str = "local",
    ) -> None:
        if not (isinstance(sync_interval, (int, float)) and sync_interval >= 0) or not (
            math.isfinite(sync_interval)
        ):
            raise ValueError(f"sync_interval must be seconds >= 0, not {sync_interval!r}")
        self.client = client
        self.prefix = prefix
        self.sync_interval = float(sync_interval)
        self.on_error = validate_on_error(on_error)
        self.is_async = is_async_client(client)

    def bind(self, breaker: CircuitBreaker) -> _Binding:
        return _Binding(self, breaker)

    def __repr__(self) -> str:
        return f"RedisBreakerStore(prefix={self.prefix!r}, sync_interval={self.sync_interval})"


class _Binding:
    """One breaker's link to the shared state."""

    def __init__(self, store: RedisBreakerStore, breaker: CircuitBreaker) -> None:
        self.store = store
        self.b = breaker
        self.client = store.client
        name = breaker.name
        self.keys_sync = [tagged_key(store.prefix, name, "state"),
                          tagged_key(store.prefix, name, "window")]  # fmt: skip
        self.keys_permit = [self.keys_sync[0], tagged_key(store.prefix, name, "permits")]
        self.keys_all = [*self.keys_permit, self.keys_sync[1]]
        window = breaker.window
        if isinstance(window, CountWindow):
            kind, size, buckets = "c", float(window.size), 1
        else:
            kind, size = "t", float(window.seconds)
            buckets = window.buckets or min(60, max(1, math.ceil(window.seconds)))
        self.durations = [repr(breaker._duration(n)) for n in range(1, _DURATIONS + 1)]
        self.config = [
            repr(breaker.failure_rate), str(breaker.minimum_calls),
            str(breaker.consecutive_failures or 0),
            repr(breaker.slow_call_rate if breaker.slow_call_rate is not None else -1.0),
            kind, repr(size), str(buckets), *self.durations,
        ]  # fmt: skip
        self.tracker = OutageTracker("breaker", "RedisBreakerStore")
        self.degraded = False
        self.blind = False  # degraded under "allow"/"deny": every call takes the slow path
        self.flush_due = False  # an async local trip waiting for its flush
        self.trip: int | None = None  # the generation of a local trip the fleet has not seen
        self.trips = 0  # local trips so far; ``trips_sent``: as many as the last flush carried
        self.trips_sent = 0
        # The outcomes of the flush that found Redis down with a local trip in them, and
        # the generation that trip opened: sent on rejoining while that opening stands.
        self.carry: tuple[list[str], int] | None = None
        self.synced = False  # until the first sync, the local state means nothing
        self.next_sync = 0.0
        self.sync_lock = threading.Lock()
        self.sent = (0, 0, 0)  # success+slow, failures, slow already flushed
        self.remote_gen = b""
        self.permit_seq = 0

    # -- the breaker's hooks ------------------------------------------------------------

    @property
    def remote_permits(self) -> bool:
        return not self.degraded

    def opened_locally(self, gen: int) -> None:
        """A local trip: flush at once so the fleet decides with our outcomes.

        (With an asyncio client the async driver flushes right after the call.)
        If that flush fails, the local state keeps its own decision (see _flush_failed).
        """
        self.trip = gen
        self.trips += 1
        self.next_sync = 0.0
        if self.store.is_async:
            self.flush_due = True
        else:
            self.maybe_sync()

    def fresh(self) -> bool:
        return not self.blind and self.b._now() < self.next_sync

    def gate(self) -> Any:
        """While Redis is down under "allow"/"deny": a pass token, or a rejection."""
        if self.store.on_error == "deny":
            raise self.b._reject(self.store.sync_interval)
        return -1

    def refresh(self) -> None:
        if not self.store.is_async:
            self.maybe_sync()

    def maybe_sync(self) -> None:
        if self.store.is_async or self.b._now() < self.next_sync:
            return
        if not self.sync_lock.acquire(blocking=not self.synced):
            return  # another thread is syncing: go on with what we know (at most one interval old)
        if not self.synced and self.b._now() < self.next_sync:
            self.sync_lock.release()  # another thread did the first sync while we waited
            return
        try:
            args = self._sync_args()
            try:
                reply = _SYNC.run(self.client, self.keys_sync, args)
            except RedisError as exc:
                self._flush_failed(args, exc)
                return
            self._adopt_sync(reply)
        finally:
            self.sync_lock.release()

    async def amaybe_sync(self) -> None:
        if not self.store.is_async:
            self.maybe_sync()
            return
        if self.b._now() < self.next_sync:
            return
        while not self.sync_lock.acquire(blocking=False):
            if self.synced:
                return  # another task is syncing: go on with what we know
            await asyncio.sleep(0)  # the first sync is in flight in another task: let it land
        if not self.synced and self.b._now() < self.next_sync:
            self.sync_lock.release()
            return
        self.flush_due = False
        try:
            args = self._sync_args()
            try:
                reply = await _SYNC.arun(self.client, self.keys_sync, args)
            except RedisError as exc:
                self._flush_failed(args, exc)
                return
            self._adopt_sync(reply)
        finally:
            self.sync_lock.release()

    def acquire(self, breaker: CircuitBreaker) -> Any:
        pid = self._permit_id()
        try:
            reply = _ACQUIRE.run(self.client, self.keys_permit, self._acquire_args(pid))
        except RedisError as exc:
            self._failed(exc)
            return self._degraded_admit()
        return self._adopt_acquire(reply, pid)

    async def aacquire(self, breaker: CircuitBreaker) -> Any:
        pid = self._permit_id()
        try:
            reply = await _ACQUIRE.arun(self.client, self.keys_permit, self._acquire_args(pid))
        except RedisError as exc:
            self._failed(exc)
            return self._degraded_admit()
        return self._adopt_acquire(reply, pid)

    def release(self, breaker: CircuitBreaker, permit: Any, outcome: int, slow: bool) -> None:
        code = self._probe_outcome(outcome, slow)
        try:
            reply = _RELEASE.run(self.client, self.keys_all, self._release_args(permit, code))
        except RedisError as exc:
            self._release_failed(permit, outcome, slow, exc)
            return
        self._adopt_release(permit, reply)

    async def arelease(
        self, breaker: CircuitBreaker, permit: Any, outcome: int, slow: bool
    ) -> None:
        if not self.store.is_async:
            self.release(breaker, permit, outcome, slow)
            return
        code = self._probe_outcome(outcome, slow)
        try:
            reply = await _RELEASE.arun(
                self.client, self.keys_all, self._release_args(permit, code)
            )
        except RedisError as exc:
            self._release_failed(permit, outcome, slow, exc)
            return
        self._adopt_release(permit, reply)

    def set_state(self, state: State) -> None:
        try:
            if self.store.is_async:
                return  # applied locally; call ``await breaker.aset_state`` for the fleet
            _SET_STATE.run(self.client, self.keys_all, [state.value])
        except RedisError as exc:
            self._failed(exc)

    async def aset_state(self, state: State) -> None:
        try:
            await _SET_STATE.arun(self.client, self.keys_all, [state.value])
        except RedisError as exc:
            self._failed(exc)

    def metrics(self) -> Iterable[Metric]:
        yield Metric(
            "opskit_breaker_store_errors_total", "counter",
            "Redis errors met by the breaker's shared store.", self.tracker.errors,
            {"name": self.b.name},
        )  # fmt: skip

    # -- internals -----------------------------------------------------------------------

    def _permit_id(self) -> str:
        self.permit_seq += 1
        return f"{id(self):x}:{self.permit_seq}"

    def _acquire_args(self, pid: str) -> list[str]:
        return [str(self.b.half_open_calls), repr(self.b.probe_timeout or 0), pid]

    def _release_args(self, permit: Any, outcome: int) -> list[str]:
        return [permit.remote, str(outcome), str(self.b.half_open_calls), *self.durations]

    def _probe_outcome(self, outcome: int, slow: bool) -> int:
        if outcome == 0 and slow and self.b.slow_call_rate is not None:
            return 1
        return outcome

    def _sync_args(self) -> list[str]:
        b = self.b
        self.trips_sent = self.trips
        b._fold()
        counts = b._counts
        ok = counts["success"] + counts["slow"]
        fails = counts["failure"]
        slow_n = counts["slow"]
        s_ok, s_fail, s_slow = self.sent
        d_ok, d_fail, d_slow = ok - s_ok, fails - s_fail, slow_n - s_slow
        self.sent = (ok, fails, slow_n)
        if self.degraded:
            # Rejoining: the local breaker already acted on what it saw during the
            # outage; the shared state is authoritative, so those outcomes are dropped,
            # except those of a local trip whose opening still stands.
            kept = self._kept_trip()
            if kept is not None:
                return [*kept, *self.config]
            d_ok = d_fail = d_slow = 0
        had_success = 1 if d_ok > 0 else 0
        tail = b._consec if had_success else d_fail
        return [str(d_ok + d_fail), str(d_fail), str(d_slow), str(had_success), str(tail),
                *self.config]  # fmt: skip

    def _flush_failed(self, args: list[str], exc: BaseException) -> None:
        """A flush met a Redis error. A local trip waiting for it opens the local
        breaker before the policy applies (under "raise" the error surfaces after)."""
        self._unsent(args)
        trip, self.trip = self.trip, None
        if trip is not None and self.b._open_locally(trip) and not self.degraded:
            self.carry = (args[:5], self.b._gen)
        self._failed(exc)

    def _kept_trip(self) -> list[str] | None:
        """The outcomes behind a local trip made as Redis went down, while the opening
        they made still stands (same generation, open, its time not up)."""
        if self.carry is None:
            return None
        outcomes, gen = self.carry
        b = self.b
        if b._gen == gen and b._state is State.OPEN and b._now() < b._open_until:
            return outcomes
        self.carry = None
        return None

    def _release_failed(self, permit: Any, outcome: int, slow: bool, exc: BaseException) -> None:
        """Redis failed releasing a fleet permit: the local state settles the probe
        (reopens on a failure, counts a success), then the policy applies."""
        self.b._settle(permit, outcome, slow)
        self._failed(exc)

    def _unsent(self, args: list[str]) -> None:
        """A flush that failed: send these outcomes with the next one."""
        calls, fails, slow = int(args[0]), int(args[1]), int(args[2])
        s_ok, s_fail, s_slow = self.sent
        self.sent = (s_ok - (calls - fails), s_fail - fails, s_slow - slow)

    def _failed(self, exc: BaseException) -> None:
        policy = self.store.on_error
        self.tracker.failed(exc, policy)
        self.degraded = True
        self.synced = True  # local state is what counts now
        self.blind = policy in ("allow", "deny")
        self.next_sync = self.b._now() + self.store.sync_interval
        if policy == "raise":
            raise exc

    def _recovered(self) -> None:
        if self.degraded:
            self.degraded = self.blind = False
            self.carry = None
        self.tracker.ok()

    def _degraded_admit(self) -> Any:
        policy = self.store.on_error
        if policy == "allow":
            return -1  # the disabled token: pass, record nothing
        if policy == "deny":
            raise self.b._reject(self.store.sync_interval)
        return self.b._local_permit(self.b._now())

    def _adopt_sync(self, reply: Any) -> None:
        self._recovered()
        self.synced = True
        state, remaining, gen = _text(reply[0]), float(_text(reply[1])), reply[2]
        self.next_sync = self.b._now() + self.store.sync_interval
        if self.trips == self.trips_sent:
            self.trip = None  # the fleet has seen it and decided
        else:
            # A trip came while this flush was in flight (another thread or task): it
            # still waits for its own flush, at the next call.
            self.next_sync = 0.0
        self._adopt(State(state), remaining)
        self.remote_gen = gen

    def _adopt_acquire(self, reply: Any, pid: str) -> Any:
        self._recovered()
        verdict, number = _text(reply[0]), float(_text(reply[1]))
        b = self.b
        now = b._now()
        if verdict == "granted":
            self._adopt(State.HALF_OPEN, 0.0)
            return b._hold_remote(pid, now)
        if verdict == "open":
            self._adopt(State.OPEN, number)
            raise b._reject(max(0.0, number))
        if verdict == "full":
            self._adopt(State.HALF_OPEN, 0.0)
            raise b._reject(max(0.0, number))
        self._adopt(State(verdict), 0.0)
        if verdict == "closed":
            return b._gen
        if verdict == "disabled":
            return -1
        raise b._reject(None)  # forced_open

    def _adopt_release(self, permit: _Permit, reply: Any) -> None:
        self.b._forget(permit)
        self._recovered()
        verdict = _text(reply[0])
        if verdict == "stale":
            return
        remaining = float(_text(reply[1])) if len(reply) > 1 else 0.0
        self._adopt(State(verdict), remaining)

    def _adopt(self, state: State, remaining: float) -> None:
        """Make the local breaker show the shared state."""
        b = self.b
        now = b._now()
        with b._lock:
            if state is State.OPEN:
                until = now + remaining
                if b._state is State.OPEN and abs(b._open_until - until) < 1e-3:
                    return
                change = b._set_state_locked(State.OPEN, now, open_until=until)
            elif b._state is state:
                return
            else:
                change = b._set_state_locked(state, now)
        b._emit(change)
