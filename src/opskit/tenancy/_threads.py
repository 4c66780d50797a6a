"""Carrying the tenant into threads: ``copy_to_thread`` and ``TenantThreadPoolExecutor``.

``loop.run_in_executor`` and ``ThreadPoolExecutor.submit`` run the callable in
the worker thread's own context, where no scope was entered (CPython #78195).
Both helpers here run it in a copy of the submitter's context instead; the
worker thread's own context is never touched, so nothing stays behind in it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["TenantThreadPoolExecutor", "copy_to_thread"]

P = ParamSpec("P")
R = TypeVar("R")


def copy_to_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to the context current now (its tenant scope included).

    Every call of the returned wrapper runs ``fn`` in a fresh copy of that
    captured context, so the wrapper may run repeatedly and in several threads
    at once, and whatever ``fn`` sets stays out of the calling thread.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured


class TenantThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose callables run in the submitter's context.

    ``submit`` (and so ``map`` and ``loop.run_in_executor``) copies the context
    at submission; the callable sees the tenant scope it was submitted from.
    """

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)  # type: ignore[arg-type]
