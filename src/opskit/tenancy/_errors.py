"""The tenancy module's errors: one base, one subclass per way a tenant can be missing."""

from __future__ import annotations

from typing import Any

from opskit import OpskitError

__all__ = ["InvalidTenant", "NoTenant", "TenantError", "TenantLookupError", "UnknownTenant"]


class TenantError(OpskitError):
    """Base of every error ``opskit.tenancy`` raises."""


class NoTenant(TenantError, LookupError):
    """Code that needs a tenant ran outside a tenant scope (or in a scope with none).

    ``where`` names the function or operation that needed it, when known.
    """

    def __init__(self, where: str | None = None) -> None:
        msg = "no tenant context" if where is None else f"no tenant context (needed by {where})"
        super().__init__(msg)
        self.where = where

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.where,))


class InvalidTenant(TenantError, ValueError):
    """A tenant id is malformed. ``reason`` says how; the value itself is never echoed
    (it came from outside: a header, a job message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid tenant id: {reason}")
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class UnknownTenant(TenantError):
    """The tenant lookup does not know this id (it returned ``None``)."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"unknown tenant {tenant_id!r}")
        self.tenant_id = tenant_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.tenant_id,))


class TenantLookupError(TenantError):
    """The tenant lookup raised, timed out, or returned something that is not a ``Tenant``.

    ``reason`` is ``"error"``, ``"timeout"`` or ``"bad_result"``.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"tenant lookup failed ({reason})" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.detail))
