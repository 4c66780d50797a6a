"""Tenants in Celery jobs: ``connect_celery(app)`` (importable without Celery installed).

::

    from opskit.tenancy.celery import connect_celery
    connect_celery(celery_app)

- Publishing (``before_task_publish``) writes the current tenant's id into the
  message headers (``x-opskit-tenant``); a task published outside a scope
  carries none (unless the caller passed the header itself).
- A worker (``task_prerun``) enters the message's tenant, or a scope with no
  tenant, before the task runs, and ``task_postrun`` (which Celery sends after
  success, failure and retry alike) leaves it and clears the worker thread, so
  a thread never keeps the previous task's tenant, not even between tasks.
  ``self.retry()`` republishes from inside the task's scope: every attempt
  sees its tenant.
- A malformed id in a message is never entered: the task runs with no tenant
  and a warning ``tenancy.celery_invalid_tenant`` is logged.
- Eager execution (``task_always_eager``, ``task.apply()``) keeps the caller's
  scope: the task runs in the caller's thread and context.
"""

from __future__ import annotations

import threading
from typing import Any

from opskit._core.telemetry import get_logger
from opskit.tenancy._context import _LOG_ID, _TENANT, TENANT_HEADER, _enter, _leave, _Saved
from opskit.tenancy._errors import InvalidTenant
from opskit.tenancy._tenant import Tenant, validate_id

try:
    from celery import signals as _signals
except ImportError:  # the extra is not installed; connect_celery says so
    _signals = None

__all__ = ["connect_celery"]

log = get_logger("tenancy")

_EXTRA = "opskit.tenancy.celery needs Celery: pip install 'opskit[celery]'"
_UID = "opskit.tenancy"

_connected = False
_connect_lock = threading.Lock()
# (thread, task id) -> what task_prerun saved; prerun and postrun of one run of a
# task happen in the same thread (a duplicate delivery may run elsewhere at once).
_saved: dict[tuple[int, str], _Saved] = {}


def _on_publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    if not isinstance(headers, dict):
        return
    tenant = _TENANT.get()
    if tenant is not None:
        headers[TENANT_HEADER] = tenant.id
    # Outside a scope an id passed explicitly (``headers={...}``) is left as given.


def _message_tenant(task: Any) -> Tenant | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    raw = request.get(TENANT_HEADER)
    if raw is None:
        custom = getattr(request, "headers", None)
        raw = custom.get(TENANT_HEADER) if isinstance(custom, dict) else None
    if raw is None:
        return None
    try:
        return Tenant(validate_id(raw))
    except InvalidTenant as exc:
        log.warning("tenancy.celery_invalid_tenant", task=getattr(task, "name", None),
                    reason=exc.reason)  # fmt: skip
        return None


def _on_prerun(sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
    task = task if task is not None else sender
    request = getattr(task, "request", None)
    if request is not None and getattr(request, "is_eager", False):
        return  # eager: the task keeps the caller's scope
    if task_id is None:
        return
    _saved[(threading.get_ident(), task_id)] = _enter(_message_tenant(task))


def _on_postrun(sender: Any = None, task_id: Any = None, **_: Any) -> None:
    saved = _saved.pop((threading.get_ident(), task_id), None) if task_id is not None else None
    if saved is None:
        return
    _leave(saved)
    # A worker thread's baseline is no tenant, whatever an earlier task left.
    if _TENANT.get() is not None:
        _TENANT.set(None)
        _LOG_ID.set(Ellipsis)


def connect_celery(app: Any = None) -> None:
    """Carry tenants through ``app``'s task messages (see the module docs).

    Celery's signals are process-wide, so this connects once per process
    (calling it again, or for a second app, is safe and does nothing more).
    """
    global _connected
    signals = _signals
    if signals is None:
        raise ImportError(_EXTRA)
    with _connect_lock:
        if _connected:
            return
        signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=_UID)
        signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=_UID)
        signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=_UID)
        _connected = True
