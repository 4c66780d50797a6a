"""Tenant context: one tenant per request, carried wherever the request's work goes.

::

    from opskit.tenancy import tenant_scope, get_tenant, key_for, to_headers

    with tenant_scope("acme"):
        get_tenant().id              # "acme"
        key_for("rl", "login")       # "tenant:acme:rl:login"
        to_headers()                 # {"x-opskit-tenant": "acme"}

The middleware (``opskit.tenancy.asgi`` / ``.wsgi``) enters the scope for each
request; ``copy_to_thread`` and ``TenantThreadPoolExecutor`` carry it into
threads; ``opskit.tenancy.celery`` into jobs; ``opskit.tenancy.sqlalchemy``
picks the tenant's schema per statement.
"""

from __future__ import annotations

from opskit.tenancy import resolvers
from opskit.tenancy._context import (
    TENANT_HEADER,
    current_tenant,
    from_headers,
    get_tenant,
    key_for,
    require_tenant,
    tenant_scope,
    to_headers,
)
from opskit.tenancy._errors import (
    InvalidTenant,
    NoTenant,
    TenantError,
    TenantLookupError,
    UnknownTenant,
)
from opskit.tenancy._logging import TenantLogFilter
from opskit.tenancy._tenant import DEFAULT_ID_PATTERN, Tenant, get_id_pattern, set_id_pattern
from opskit.tenancy._threads import TenantThreadPoolExecutor, copy_to_thread

__all__ = [
    "Tenant",
    "current_tenant",
    "get_tenant",
    "tenant_scope",
    "require_tenant",
    "resolvers",
    "TenantError",
    "NoTenant",
    "UnknownTenant",
    "InvalidTenant",
    "TenantLookupError",
    "to_headers",
    "from_headers",
    "copy_to_thread",
    "TenantThreadPoolExecutor",
    "key_for",
    "TenantLogFilter",
    "TENANT_HEADER",
    "DEFAULT_ID_PATTERN",
    "set_id_pattern",
    "get_id_pattern",
]
