"""The half-open probe permit, shared by the breaker and its Redis store."""

from __future__ import annotations


class _Permit:
    """A half-open probe's right to call; released exactly once.

    ``remote`` is the permit's id in Redis when the fleet granted it. A remote
    permit is also held in the breaker's own permit table, so that when Redis
    fails mid-probe the local state still counts the probe in flight and can
    settle its outcome.
    """

    __slots__ = ("gen", "id", "issued", "remote")

    def __init__(self, pid: int, gen: int, issued: float, remote: str | None = None) -> None:
        self.id = pid
        self.gen = gen
        self.issued = issued
        self.remote = remote
