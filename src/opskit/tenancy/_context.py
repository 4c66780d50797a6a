"""The current tenant: one ``ContextVar``, scopes that set and restore it, and helpers.

A scope sets two context variables: the tenant itself and ``tenant_id`` in
``structlog.contextvars`` (so ``merge_contextvars`` puts it on every log line).
Leaving a scope resets both with the tokens taken on entry; when the exit runs
in another context than the entry (a streamed body iterated in another task or
thread, a sync/async hop), ``ContextVar.reset`` would raise ``ValueError``, so
the values saved on entry are set back instead.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar, cast

import structlog.contextvars

from opskit.tenancy._errors import InvalidTenant, NoTenant
from opskit.tenancy._tenant import Tenant, validate_id

__all__ = [
    "TENANT_HEADER",
    "current_tenant",
    "from_headers",
    "get_tenant",
    "key_for",
    "require_tenant",
    "tenant_scope",
    "to_headers",
]

#: The header that carries the tenant id on outgoing calls and job messages.
TENANT_HEADER = "x-opskit-tenant"

_OWS = " \t"  # HTTP's optional whitespace: all that is stripped around a header value

_TENANT: ContextVar[Tenant | None] = ContextVar("opskit.tenancy.tenant", default=None)


def _structlog_var() -> ContextVar[Any]:
    """structlog's own variable for ``tenant_id`` (shared with ``bind_contextvars``)."""
    name = f"{structlog.contextvars.STRUCTLOG_KEY_PREFIX}tenant_id"
    registry = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
    if isinstance(registry, dict):
        var = registry.get(name)
        if var is None:
            var = registry[name] = ContextVar(name, default=Ellipsis)
        return cast("ContextVar[Any]", var)
    # A structlog without the registry still merges every variable named structlog_*.
    return ContextVar(name, default=Ellipsis)  # pragma: no cover


_LOG_ID: ContextVar[Any] = _structlog_var()


def current_tenant() -> Tenant | None:
    """The tenant of the current scope, or ``None``."""
    return _TENANT.get()


def get_tenant() -> Tenant:
    """The tenant of the current scope; :class:`NoTenant` outside one."""
    tenant = _TENANT.get()
    if tenant is None:
        raise NoTenant()
    return tenant


# id -> Tenant(id) for scopes entered by id: a Tenant is immutable, so one object per
# id is shared (bounded; an id is validated before it is kept).
_BY_ID: dict[str, Tenant] = {}
_BY_ID_MAX = 4096


def _tenant_for_id(tenant_id: str) -> Tenant:
    tenant = _BY_ID.get(tenant_id)
    if tenant is not None:
        validate_id(tenant_id)  # a set lookup; raises if set_id_pattern() changed since
    else:
        tenant = Tenant(tenant_id)
        if len(_BY_ID) >= _BY_ID_MAX:
            _BY_ID.clear()
        _BY_ID[tenant.id] = tenant
    return tenant


def _as_tenant(value: Tenant | str | None) -> Tenant | None:
    if value is None or isinstance(value, Tenant):
        return value
    if isinstance(value, str):
        return _tenant_for_id(value)
    raise InvalidTenant(f"expected a Tenant, a string or None, got {type(value).__name__}")


_Saved = tuple[Token[Tenant | None], Token[Any]]
_MISSING = Token.MISSING


def _enter(tenant: Tenant | None) -> _Saved:
    return (_TENANT.set(tenant), _LOG_ID.set(Ellipsis if tenant is None else tenant.id))


def _restore(t_token: Token[Tenant | None], l_token: Token[Any]) -> None:
    """Leave a scope whose tokens belong to another context (or were used already):
    set back the values they replaced (``Token.old_value``) in this context."""
    try:
        _TENANT.reset(t_token)
    except (ValueError, RuntimeError):
        old = t_token.old_value
        _TENANT.set(None if old is _MISSING else old)
    try:
        _LOG_ID.reset(l_token)
    except (ValueError, RuntimeError):
        old = l_token.old_value
        _LOG_ID.set(Ellipsis if old is _MISSING else old)


def _leave(saved: _Saved) -> None:
    t_token, l_token = saved
    try:
        _TENANT.reset(t_token)
        _LOG_ID.reset(l_token)
    except (ValueError, RuntimeError):  # another context, or a token used twice
        _restore(t_token, l_token)


class tenant_scope:
    """Run a block as ``tenant`` (a :class:`Tenant`, an id, or ``None`` for no tenant).

    ``with tenant_scope("acme") as t:`` and ``async with`` both work; scopes
    nest and each restores what was current before it. An id is validated when
    the scope is created (:class:`InvalidTenant`). One scope object may be
    entered again once it has been left, and re-entered while active (each
    exit restores its own entry). Leaving it in another context than the one
    it was entered in sets back the values saved on entry instead of raising
    ``ValueError``.
    """

    __slots__ = ("_l_token", "_log_value", "_outer", "_t_token", "tenant")

    def __init__(self, tenant: Tenant | str | None) -> None:
        self.tenant = tenant = _as_tenant(tenant)
        self._log_value: Any = Ellipsis if tenant is None else tenant.id
        self._t_token: Token[Tenant | None] | None = None
        self._l_token: Token[Any] | None = None
        self._outer: list[_Saved] | None = None  # entries of a re-entered scope object

    def __enter__(self) -> Tenant | None:
        if self._t_token is not None:
            if self._outer is None:
                self._outer = []
            self._outer.append((self._t_token, self._l_token))  # type: ignore[arg-type]
        self._t_token = _TENANT.set(self.tenant)
        self._l_token = _LOG_ID.set(self._log_value)
        return self.tenant

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        t_token, l_token = self._t_token, self._l_token
        if t_token is None or l_token is None:
            raise RuntimeError("tenant_scope exited without being entered")
        if self._outer:
            self._t_token, self._l_token = self._outer.pop()
        else:
            self._t_token = self._l_token = None
        try:
            _TENANT.reset(t_token)
            _LOG_ID.reset(l_token)
        except (ValueError, RuntimeError):
            _restore(t_token, l_token)

    async def __aenter__(self) -> Tenant | None:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"tenant_scope({self.tenant!r})"


F = TypeVar("F", bound=Any)


def require_tenant(fn: F) -> F:
    """Decorate a function (sync or async) so that it raises :class:`NoTenant` when
    called outside a tenant scope. An async function stays a coroutine function."""
    where = getattr(fn, "__qualname__", None) or repr(fn)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if _TENANT.get() is None:
                raise NoTenant(where)
            return await fn(*args, **kwargs)

        return cast("F", async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _TENANT.get() is None:
            raise NoTenant(where)
        return fn(*args, **kwargs)

    return cast("F", wrapper)


def key_for(*parts: object) -> str:
    """``"tenant:<id>:" + ":".join(parts)``, a key no other tenant can share.

    ``key_for("rl", "login") -> "tenant:acme:rl:login"``; :class:`NoTenant`
    outside a scope (a key without a tenant would be shared by all of them).
    """
    tenant = _TENANT.get()
    if tenant is None:
        raise NoTenant("key_for")
    if not parts:
        return f"tenant:{tenant.id}"
    return f"tenant:{tenant.id}:" + ":".join(map(str, parts))


def to_headers(name: str = TENANT_HEADER) -> dict[str, str]:
    """``{"x-opskit-tenant": "<id>"}`` for an outgoing call or a job message; ``{}``
    outside a scope."""
    tenant = _TENANT.get()
    return {} if tenant is None else {name: tenant.id}


def _header_values(headers: Any, name: str) -> list[str]:
    want = name.lower()
    items: Iterable[Any]
    if headers is None:
        return []
    if isinstance(headers, Mapping) or hasattr(headers, "items"):
        items = headers.items()
    else:
        items = headers
    values: list[str] = []
    for pair in items:
        try:
            key, value = pair
        except (TypeError, ValueError):
            raise InvalidTenant("headers must be a mapping or (name, value) pairs") from None
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if not isinstance(key, str) or key.lower() != want:
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str):
            raise InvalidTenant(f"header value is a {type(value).__name__}, not a string")
        values.append(value)
    return values


def tenant_from_headers(headers: Any, name: str = TENANT_HEADER) -> Tenant | None:
    """The tenant named by ``headers`` (validated), or ``None`` without the header."""
    values = _header_values(headers, name)
    if not values:
        return None
    first = values[0]
    if any(v != first for v in values[1:]):
        raise InvalidTenant("the tenant header is repeated with different values")
    return _tenant_for_id(validate_id(first.strip(_OWS)))


def from_headers(headers: Any, name: str = TENANT_HEADER) -> tenant_scope:
    """A scope for the tenant that ``headers`` carry (as :func:`to_headers` wrote them).

    ``headers``: a mapping, (name, value) pairs, ASGI raw pairs, or any object
    with ``items()``; names compare case-insensitively. The id is validated here
    (:class:`InvalidTenant`). Without the header the scope has no tenant, so an
    outer tenant is not inherited either.
    """
    return tenant_scope(tenant_from_headers(headers, name))
