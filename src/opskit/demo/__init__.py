"""The demo service behind ``opskit demo``: a small pure-ASGI app.

Each module contributes a :class:`Part` (see ``opskit.demo._parts``): a path
prefix, a one-line description and an ASGI app. The index page lists what is
mounted; ``/metrics`` serves the Prometheus exposition.
"""

from __future__ import annotations

from opskit.demo._app import Part, build_app

__all__ = ["Part", "build_app"]
