"""Redis plumbing: atomic Lua scripts, hash-tagged keys, and the outage policy.

Every read-modify-write opskit does in Redis is one :class:`Script`, run by
EVALSHA and re-sent with EVAL when the server answers NOSCRIPT (a restart, a
failover, ``SCRIPT FLUSH``), so one decision costs one round trip in the
common case and never fails because the script cache was lost. All keys of a
script are built with :func:`tagged_key` so they share one ``{hash tag}`` and
the same code runs on Redis Cluster. Scripts that decide by time start with
:data:`LUA_NOW`, which reads the Redis server's clock.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from redis.exceptions import NoScriptError
from redis.exceptions import RedisError as _RedisError

from opskit._core.telemetry import get_logger

__all__ = [
    "LUA_NOW",
    "NoScriptError",
    "OnError",
    "OutageTracker",
    "RedisError",
    "Script",
    "is_async_client",
    "tagged_key",
    "validate_on_error",
]

RedisError = _RedisError

OnError = Literal["allow", "deny", "local", "raise"]
_ON_ERROR = ("allow", "deny", "local", "raise")

#: Lua prologue: ``now`` is the server's time in seconds (float). Writes after
#: TIME need effects replication, the default since Redis 5 (opskit needs >= 5).
LUA_NOW = """
local __t = redis.call('TIME')
local now = tonumber(__t[1]) + tonumber(__t[2]) / 1000000
"""

Keys = Sequence[str]
Args = Sequence[str | int | float | bytes]


class Script:
    """A Lua script run atomically by SHA, reloaded on NOSCRIPT.

    Works with ``redis.Redis``, ``redis.cluster.RedisCluster`` (:meth:`run`) and
    ``redis.asyncio.Redis``, ``redis.asyncio.cluster.RedisCluster`` (:meth:`arun`).
    On Cluster every key must be passed in ``keys`` and all must share one slot.
    """

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def run(self, client: Any, keys: Keys = (), args: Args = ()) -> Any:
        """Run on a synchronous client; one round trip unless the script was flushed."""
        return self.bound(client, len(keys))(*keys, *args)

    async def arun(self, client: Any, keys: Keys = (), args: Args = ()) -> Any:
        """Run on an asyncio client."""
        return await self.abound(client, len(keys))(*keys, *args)

    def bound(self, client: Any, numkeys: int) -> Callable[..., Any]:
        """:meth:`run` on one synchronous client with ``numkeys`` keys, as a function of
        the keys and then the arguments: a hot path binds it once."""
        # execute_command directly: evalsha() is only a wrapper around it (Cluster
        # clients route EVALSHA by the keys in these same positions).
        execute, sha, source = client.execute_command, self.sha, self.source

        def run(*keys_and_args: Any) -> Any:
            try:
                return execute("EVALSHA", sha, numkeys, *keys_and_args)
            except NoScriptError:
                # EVAL runs it and caches it again on the node that owns the keys.
                return execute("EVAL", source, numkeys, *keys_and_args)

        return run

    def abound(self, client: Any, numkeys: int) -> Callable[..., Awaitable[Any]]:
        """:meth:`bound` for an asyncio client."""
        execute, sha, source = client.execute_command, self.sha, self.source

        async def run(*keys_and_args: Any) -> Any:
            try:
                return await execute("EVALSHA", sha, numkeys, *keys_and_args)
            except NoScriptError:
                return await execute("EVAL", source, numkeys, *keys_and_args)

        return run

    def __repr__(self) -> str:
        return f"Script(sha={self.sha[:12]}...)"


def is_async_client(client: Any) -> bool:
    """True for ``redis.asyncio`` clients (their ``execute_command`` is a coroutine)."""
    method = getattr(client, "execute_command", None)
    return method is not None and inspect.iscoroutinefunction(method)


def _escape(part: str) -> str:
    # Braces would move the hash tag; escape them (and the escape char) injectively.
    return part.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def tagged_key(prefix: str, name: str, *suffixes: str) -> str:
    """``<prefix>{<name>}:<suffix>...``: all keys of one object share one Cluster slot.

    ``name`` is escaped so braces in user-supplied names cannot move the tag.
    """
    key = f"{prefix}{{{_escape(name)}}}"
    for s in suffixes:
        key += ":" + s
    return key


def validate_on_error(value: str) -> OnError:
    """Check an ``on_error=`` argument; raise ``ValueError`` naming the allowed values."""
    if value not in _ON_ERROR:
        raise ValueError(
            f"on_error must be one of {', '.join(map(repr, _ON_ERROR))}, not {value!r}"
        )
    return value  # type: ignore[return-value]


class OutageTracker:
    """Logs a Redis outage once per incident, counts errors, and notes recovery.

    A store calls :meth:`failed` from its error path and :meth:`ok` from its
    success path; ``ok`` is one attribute read while nothing is wrong.
    """

    __slots__ = ("_log", "active", "component", "errors", "incidents", "module")

    def __init__(self, module: str, component: str) -> None:
        self._log = get_logger(module)
        self.module = module
        self.component = component
        self.active = False
        self.errors = 0
        self.incidents = 0

    def failed(self, exc: BaseException, policy: str) -> None:
        self.errors += 1
        if not self.active:
            self.active = True
            self.incidents += 1
            self._log.warning(
                f"{self.module}.store_unavailable",
                component=self.component,
                policy=policy,
                error=type(exc).__name__,
            )

    def ok(self) -> None:
        if self.active:
            self.active = False
            self._log.info(f"{self.module}.store_recovered", component=self.component)
