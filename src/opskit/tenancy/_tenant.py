"""``Tenant``: an id and free attributes, frozen; and the id pattern every id must match."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opskit.tenancy._errors import InvalidTenant

__all__ = ["DEFAULT_ID_PATTERN", "Tenant", "get_id_pattern", "set_id_pattern", "validate_id"]

#: What a tenant id looks like unless :func:`set_id_pattern` says otherwise.
DEFAULT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"

# Never allowed, whatever the pattern: an id travels in HTTP headers, log lines and keys.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_LEN = 255

_pattern: re.Pattern[str] = re.compile(DEFAULT_ID_PATTERN)
# Ids already found valid under the pattern in force (bounded; cleared when it changes).
_valid: set[str] = set()
_VALID_MAX = 4096


def _compile(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)


def set_id_pattern(pattern: str | re.Pattern[str] | None) -> re.Pattern[str]:
    """Set the process-wide id pattern (``None``: the default); return the previous one.

    Ids must match it in full (``fullmatch``) wherever they enter: ``Tenant(...)``,
    ``tenant_scope("...")``, ``from_headers``, job messages, the middleware (whose
    own ``id_pattern`` narrows it further). Control characters and ids longer
    than 255 characters are refused whatever the pattern.
    """
    global _pattern
    previous = _pattern
    _pattern = _compile(DEFAULT_ID_PATTERN if pattern is None else pattern)
    _valid.clear()
    return previous


def get_id_pattern() -> re.Pattern[str]:
    """The process-wide id pattern in force."""
    return _pattern


def validate_id(value: object, pattern: re.Pattern[str] | None = None) -> str:
    """``value`` if it is a well-formed tenant id, else :class:`InvalidTenant`.

    ``pattern`` is checked besides the process-wide pattern, never instead of it.
    """
    if value.__class__ is str and value in _valid:
        if pattern is None or pattern.fullmatch(value) is not None:
            return value
        raise InvalidTenant(f"does not match {pattern.pattern!r}")
    if not isinstance(value, str):
        raise InvalidTenant(f"expected a string, got {type(value).__name__}")
    if not value:
        raise InvalidTenant("empty")
    if len(value) > _MAX_LEN or _CONTROL.search(value) is not None:
        raise InvalidTenant("too long or contains control characters")
    if _pattern.fullmatch(value) is None:
        raise InvalidTenant(f"does not match {_pattern.pattern!r}")
    if value.__class__ is str:
        if len(_valid) >= _VALID_MAX:
            _valid.clear()
        _valid.add(value)
    if pattern is not None and pattern.fullmatch(value) is None:
        raise InvalidTenant(f"does not match {pattern.pattern!r}")
    return value


_RESERVED = frozenset({"id", "attributes", "replace"})


class Tenant:
    """A tenant: a validated ``id`` and free attributes, read as attributes.

    ``Tenant("acme", plan="pro", schema="tenant_acme").schema == "tenant_acme"``.
    Frozen; equal when the ids and the attributes are equal; hashed by id. A
    missing attribute raises ``AttributeError``. The repr names the attributes
    but never shows their values (they may be credentials or keys).
    """

    __slots__ = ("_attrs", "id")

    id: str

    def __init__(self, id: str, /, **attributes: Any) -> None:
        object.__setattr__(self, "id", validate_id(id))
        for name in attributes:
            if name in _RESERVED or name.startswith("_"):
                raise TypeError(f"{name!r} cannot be a tenant attribute (reserved)")
        object.__setattr__(self, "_attrs", attributes)

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: ``id`` and methods never come here.
        if name == "_attrs":
            raise AttributeError(name)
        try:
            return self._attrs[name]
        except KeyError:
            raise AttributeError(f"tenant {self.id!r} has no attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Tenant is frozen; use .replace(...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Tenant is frozen")

    @property
    def attributes(self) -> Mapping[str, Any]:
        """The attributes as a read-only mapping."""
        return MappingProxyType(self._attrs)

    def replace(self, **changes: Any) -> Tenant:
        """A copy with some attributes changed or added (the id stays)."""
        return Tenant(self.id, **{**self._attrs, **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tenant):
            return NotImplemented
        return self.id == other.id and self._attrs == other._attrs

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        names = "".join(f", {k}=..." for k in self._attrs)
        return f"Tenant({self.id!r}{names})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.id, dict(self._attrs)))


def _rebuild(tenant_id: str, attributes: dict[str, Any]) -> Tenant:
    return Tenant(tenant_id, **attributes)
