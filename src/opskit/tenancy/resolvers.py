"""Where the middleware finds a request's tenant id.

A resolver reads a request and returns the raw id it names (validated later by
the middleware), a ready :class:`~opskit.tenancy.Tenant` (``scope_value`` when
an auth layer stored one), or ``None`` when the request names no tenant. Each
one works under both adapters: ``asgi(scope)`` and ``wsgi(environ)``. A plain
callable is accepted by the middleware too; it gets the ASGI scope or the WSGI
environ.

Ambiguity fails closed: a header repeated with different values raises
:class:`~opskit.tenancy.InvalidTenant` (answered 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from typing import Any

from opskit.tenancy._errors import InvalidTenant
from opskit.tenancy._tenant import Tenant

__all__ = ["Resolver", "first", "header", "path_prefix", "scope_value", "subdomain"]

Found = str | Tenant | None

# HTTP's optional whitespace, the only characters stripped around a value (str.strip()
# would also drop "\x85", "\x1f" and other characters a client may send on purpose).
_OWS = " \t"


class Resolver:
    """Base of the resolvers here; subclasses implement both methods.

    ``mutates`` is true for a resolver that rewrites the ASGI scope (a stripped
    path prefix): the middleware then hands it a copy of the scope.
    """

    __slots__ = ()

    mutates = False

    def asgi(self, scope: MutableMapping[str, Any]) -> Found:
        raise NotImplementedError

    def wsgi(self, environ: MutableMapping[str, Any]) -> Found:
        raise NotImplementedError


class _Header(Resolver):
    __slots__ = ("_environ_key", "name", "raw_name")

    def __init__(self, name: str) -> None:
        if not name or not isinstance(name, str):
            raise ValueError("header name must be a non-empty string")
        self.name = name
        self.raw_name = name.lower().encode("latin-1")
        key = name.upper().replace("-", "_")
        self._environ_key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"

    def asgi(self, scope: MutableMapping[str, Any]) -> Found:
        want = self.raw_name
        found: bytes | None = None
        # ASGI servers send lowercase names; a hand-built scope may not.
        for key, value in scope.get("headers") or ():
            if key == want or key.lower() == want:
                if found is not None and value != found:
                    raise InvalidTenant(f"header {self.name} is repeated with different values")
                found = value
        return None if found is None else found.decode("latin-1").strip(_OWS)

    def wsgi(self, environ: MutableMapping[str, Any]) -> Found:
        value = environ.get(self._environ_key)
        if value is None:
            return None
        value = str(value)
        # WSGI servers join repeated headers with "," (waitress, gunicorn).
        if "," in value:
            parts = {p.strip(_OWS) for p in value.split(",")}
            if len(parts) != 1:
                raise InvalidTenant(f"header {self.name} is repeated with different values")
            value = parts.pop()
        return value.strip(_OWS)

    def __repr__(self) -> str:
        return f"resolvers.header({self.name!r})"


def header(name: str) -> Resolver:
    """The id in request header ``name`` (case-insensitive)."""
    return _Header(name)


class _Subdomain(Resolver):
    __slots__ = ("_suffix", "base")

    def __init__(self, base: str) -> None:
        base = base.strip().strip(".").lower()
        if not base:
            raise ValueError("base domain must not be empty")
        self.base = base
        self._suffix = "." + base

    def _label(self, host: str | None) -> str | None:
        if not host:
            return None
        host = host.strip(_OWS).lower()
        if host.startswith("["):  # an IPv6 literal is never a tenant host
            return None
        host = host.rsplit(":", 1)[0] if ":" in host else host
        host = host.rstrip(".")
        if not host.endswith(self._suffix):
            return None
        label = host[: -len(self._suffix)]
        if not label or "." in label:
            return None  # the base domain itself, or more than one label under it
        return label

    def asgi(self, scope: MutableMapping[str, Any]) -> Found:
        for key, value in scope.get("headers") or ():
            if key == b"host":
                return self._label(value.decode("latin-1"))
        return None

    def wsgi(self, environ: MutableMapping[str, Any]) -> Found:
        return self._label(environ.get("HTTP_HOST"))

    def __repr__(self) -> str:
        return f"resolvers.subdomain({self.base!r})"


def subdomain(base: str) -> Resolver:
    """The one DNS label under ``base``: ``acme.example.com`` -> ``"acme"``.

    Lower-cased (host names are case-insensitive); the port is ignored; the base
    domain itself, deeper names (``a.b.example.com``) and other hosts name no
    tenant.
    """
    return _Subdomain(base)


class _PathPrefix(Resolver):
    __slots__ = ("_head", "_regex", "_tail", "mutates", "strip", "template")

    def __init__(self, template: str, strip: bool) -> None:
        self.mutates = strip
        if template.count("{tenant}") != 1 or not template.startswith("/"):
            raise ValueError("template must start with '/' and hold '{tenant}' once")
        head, tail = template.split("{tenant}")
        self.template = template
        self.strip = strip
        self._head = head
        self._tail = tail
        self._regex = re.compile(re.escape(head) + r"([^/]+)" + re.escape(tail) + r"(?=/|$)")

    def _match(self, path: str) -> tuple[str, int] | None:
        if not path.startswith(self._head):
            return None
        m = self._regex.match(path)
        if m is None:
            return None
        return m.group(1), m.end()

    def asgi(self, scope: MutableMapping[str, Any]) -> Found:
        path = scope.get("path") or ""
        m = self._match(path)
        if m is None:
            return None
        tenant_id, end = m
        if self.strip:
            # The caller gave the middleware its own copy of the scope to change.
            scope["root_path"] = scope.get("root_path", "") + path[:end]
            scope["path"] = path[end:] or "/"
        return tenant_id

    def wsgi(self, environ: MutableMapping[str, Any]) -> Found:
        path = environ.get("PATH_INFO") or ""
        m = self._match(path)
        if m is None:
            return None
        tenant_id, end = m
        if self.strip:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + path[:end]
            environ["PATH_INFO"] = path[end:]
        return tenant_id

    def __repr__(self) -> str:
        return f"resolvers.path_prefix({self.template!r}, strip={self.strip})"


def path_prefix(template: str = "/t/{tenant}", *, strip: bool = True) -> Resolver:
    """The id in a path prefix: ``path_prefix("/t/{tenant}")`` reads ``/t/acme/orders``.

    With ``strip`` the matched prefix moves from ``path`` to ``root_path`` (ASGI)
    or from ``PATH_INFO`` to ``SCRIPT_NAME`` (WSGI), so the app routes
    ``/orders``. ``{tenant}`` matches one path segment.
    """
    return _PathPrefix(template, strip)


class _ScopeValue(Resolver):
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    @staticmethod
    def _value(value: Any) -> Found:
        if value is None or isinstance(value, (str, Tenant)):
            return value
        raise InvalidTenant(f"the stored tenant is a {type(value).__name__}")

    def asgi(self, scope: MutableMapping[str, Any]) -> Found:
        state = scope.get("state")
        if isinstance(state, MutableMapping) and self.key in state:
            return self._value(state[self.key])
        return self._value(scope.get(self.key))

    def wsgi(self, environ: MutableMapping[str, Any]) -> Found:
        return self._value(environ.get(self.key))

    def __repr__(self) -> str:
        return f"resolvers.scope_value({self.key!r})"


def scope_value(key: str) -> Resolver:
    """A value an earlier (auth) middleware stored: ``scope["state"][key]`` (or
    ``scope[key]``) under ASGI, ``environ[key]`` under WSGI. A stored ``Tenant``
    is used as it is."""
    return _ScopeValue(key)


class _First(Resolver):
    __slots__ = ("mutates", "resolvers")

    def __init__(self, resolvers: tuple[Resolver, ...]) -> None:
        self.resolvers = resolvers
        self.mutates = any(r.mutates for r in resolvers)

    def asgi(self, scope: MutableMapping[str, Any]) -> Found:
        for r in self.resolvers:
            found = r.asgi(scope)
            if found is not None:
                return found
        return None

    def wsgi(self, environ: MutableMapping[str, Any]) -> Found:
        for r in self.resolvers:
            found = r.wsgi(environ)
            if found is not None:
                return found
        return None

    def __repr__(self) -> str:
        return f"resolvers.first{self.resolvers!r}"


def first(*resolvers: Resolver) -> Resolver:
    """The first answer of ``resolvers``, tried in order."""
    if not resolvers or not all(isinstance(r, Resolver) for r in resolvers):
        raise TypeError("first() takes one or more resolvers")
    return _First(resolvers)


class _Callable(Resolver):
    """A plain callable given to a middleware: it gets the scope or the environ."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[MutableMapping[str, Any]], Found]) -> None:
        self.fn = fn

    def asgi(self, scope: MutableMapping[str, Any]) -> Found:
        return self.fn(scope)

    def wsgi(self, environ: MutableMapping[str, Any]) -> Found:
        return self.fn(environ)

    def __repr__(self) -> str:
        return f"resolver {self.fn!r}"


def as_resolver(value: Resolver | Callable[[MutableMapping[str, Any]], Found]) -> Resolver:
    if isinstance(value, Resolver):
        return value
    if callable(value):
        return _Callable(value)
    raise TypeError("resolver must be an opskit.tenancy.resolvers resolver or a callable")
