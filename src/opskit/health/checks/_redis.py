"""``redis_ping``: PING on a ``redis.Redis``, ``redis.asyncio.Redis`` or Cluster client."""

from __future__ import annotations

import inspect
from typing import Any

from opskit.health._check import Check
from opskit.health._status import CheckResult, Status

__all__ = ["redis_ping"]


def redis_ping(client: Any) -> Check:
    """PING through ``client``; a Cluster client pings every primary. Raising fails.

    With an asyncio client the check runs on the caller's event loop; give it a
    client made for that loop (``run_sync`` runs on a fresh loop each time).
    """
    ping = getattr(client, "ping", None)
    if ping is None:
        raise TypeError(f"checks.redis_ping() needs a Redis client, not {type(client).__name__}")

    # redis.asyncio's ping() returns an awaitable from an async execute_command.
    if inspect.iscoroutinefunction(ping) or inspect.iscoroutinefunction(
        getattr(client, "execute_command", None)
    ):

        async def aping() -> CheckResult:
            return _judge(await client.ping())

        return Check(aping, True, component_type="datastore")

    def sping() -> CheckResult:
        return _judge(client.ping())

    return Check(sping, False, component_type="datastore")


def _judge(reply: Any) -> CheckResult:
    if reply is True or reply in (b"PONG", "PONG"):
        return CheckResult(Status.PASS)
    if isinstance(reply, dict) and reply and all(v is True for v in reply.values()):
        return CheckResult(Status.PASS)
    return CheckResult(Status.FAIL, output="PING got no PONG")
