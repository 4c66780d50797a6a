"""Tenant ids on log records: a stdlib ``logging.Filter``.

structlog needs nothing from here: a tenant scope binds ``tenant_id`` in
``structlog.contextvars``, which ``merge_contextvars`` (first in the processor
chain, as ``opskit.observability.configure_logging`` puts it) adds to each event.
"""

from __future__ import annotations

import logging

from opskit.tenancy._context import _TENANT

__all__ = ["TenantLogFilter"]


class TenantLogFilter(logging.Filter):
    """Sets ``record.tenant_id`` on every record: the current tenant's id, or ``None``.

    Never drops a record. Add it to a handler (``handler.addFilter(TenantLogFilter())``)
    and use ``%(tenant_id)s`` in the format. A record that already carries a
    ``tenant_id`` (passed in ``extra=``) keeps it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if "tenant_id" not in record.__dict__:
            tenant = _TENANT.get()
            record.tenant_id = None if tenant is None else tenant.id
        return True
