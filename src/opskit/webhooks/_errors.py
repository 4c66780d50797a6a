"""Typed verification failures. Messages name headers and reasons, never values."""

from __future__ import annotations

from opskit import OpskitError

__all__ = [
    "MalformedBody",
    "MalformedForm",
    "MalformedHeader",
    "MissingHeader",
    "PayloadTooLarge",
    "ReplayDetected",
    "ReplayStoreUnavailable",
    "SignatureMismatch",
    "TimestampOutOfTolerance",
    "WebhookError",
]


class WebhookError(OpskitError):
    """A webhook failed verification.

    ``reason`` is a short, stable code (``"signature_mismatch"``); ``status`` the
    HTTP status the adapters answer with; ``scheme`` the verifier's name.
    """

    reason: str = "webhook_error"
    status: int = 400

    def __init__(self, message: str, *, scheme: str | None = None) -> None:
        super().__init__(message)
        self.scheme = scheme

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, scheme={self.scheme!r})"


class MissingHeader(WebhookError):
    """A header the scheme needs is absent or empty."""

    reason = "missing_header"

    def __init__(self, header: str, *, scheme: str | None = None, status: int = 400) -> None:
        super().__init__(f"missing header {header}", scheme=scheme)
        self.header = header
        self.status = status


class MalformedHeader(WebhookError):
    """A header could not be parsed, or is over the size/count limits."""

    reason = "malformed_header"

    def __init__(self, header: str, problem: str, *, scheme: str | None = None) -> None:
        super().__init__(f"malformed header {header}: {problem}", scheme=scheme)
        self.header = header
        self.problem = problem


class MalformedBody(WebhookError, ValueError):
    """The (verified) body is not what the caller asked for, e.g. not JSON."""

    reason = "malformed_body"

    def __init__(self, problem: str, *, scheme: str | None = None) -> None:
        super().__init__(f"malformed body: {problem}", scheme=scheme)
        self.problem = problem


class MalformedForm(MalformedBody):
    """A signed form body is not the form the app said it expects (``Twilio(expect_params=)``).

    ``missing`` holds the expected parameter names that are absent (sorted);
    ``bad_names`` counts the parameter names outside ``[A-Za-z0-9_]``. The
    message names only expected parameters, never what the request carried.
    """

    reason = "malformed_form"
    status = 400

    def __init__(
        self, missing: tuple[str, ...] = (), bad_names: int = 0, *, scheme: str | None = None
    ) -> None:
        problems = []
        if missing:
            problems.append("missing parameter " + ", ".join(missing))
        if bad_names:
            problems.append(f"{bad_names} parameter name(s) outside [A-Za-z0-9_]")
        super().__init__("; ".join(problems) or "unexpected form", scheme=scheme)
        self.missing = missing
        self.bad_names = bad_names


class SignatureMismatch(WebhookError):
    """No signature matched any secret."""

    reason = "signature_mismatch"
    status = 401

    def __init__(self, *, scheme: str | None = None, detail: str = "no signature matched") -> None:
        super().__init__(detail, scheme=scheme)


class TimestampOutOfTolerance(WebhookError):
    """The signed timestamp is older or newer than ``tolerance`` seconds from now."""

    reason = "timestamp_out_of_tolerance"
    status = 401

    def __init__(
        self, timestamp: int, now: float, tolerance: float, *, scheme: str | None = None
    ) -> None:
        direction = "old" if timestamp < now else "new"
        super().__init__(
            f"timestamp {timestamp} is too {direction} (now {int(now)}, tolerance {tolerance:g}s)",
            scheme=scheme,
        )
        self.timestamp = timestamp
        self.now = now
        self.tolerance = tolerance
        self.direction = direction


class ReplayDetected(WebhookError):
    """This message was already accepted inside its replay window."""

    reason = "replay_detected"
    status = 401

    def __init__(self, *, scheme: str | None = None, id: str | None = None) -> None:
        super().__init__("message already received", scheme=scheme)
        self.id = id


class ReplayStoreUnavailable(WebhookError):
    """The replay store is down and its ``on_error`` policy is ``"deny"``."""

    reason = "replay_store_unavailable"
    status = 503

    def __init__(self, *, scheme: str | None = None) -> None:
        super().__init__("replay store unavailable", scheme=scheme)


class PayloadTooLarge(WebhookError):
    """The body is larger than the adapter's ``max_body``."""

    reason = "payload_too_large"
    status = 413

    def __init__(self, limit: int, *, scheme: str | None = None) -> None:
        super().__init__(f"body exceeds {limit} bytes", scheme=scheme)
        self.limit = limit
