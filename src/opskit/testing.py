"""Public helpers for testing code that uses opskit.

``ManualClock`` is a clock that moves only when told to: pass it as ``clock=``
to any opskit primitive, and every wait is recorded in ``clock.sleeps`` instead
of slept.
"""

from __future__ import annotations

from opskit._core.clock import Clock, ManualClock

__all__ = ["Clock", "ManualClock"]
