"""The pii part of the demo: a token, a rotation and a redacted log line.

``GET /pii`` encrypts a demo phone number bound to a tenant and field, shows
that the token fails under another tenant, rotates it (add a key, promote it,
re-encrypt), computes a blind index and renders a log event through the
redaction processor. ``GET /pii/self-test`` runs the same steps and answers
``{"ok": true}`` when each behaved. The keyring is generated at start, demo only.
"""

from __future__ import annotations

import io
import json
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from opskit._core.asgi import Receive, Scope, Send, send_problem, send_response
from opskit.demo._app import Part
from opskit.pii import BlindIndex, DecryptionError, Keyring, PIICipher, redact_processor

PREFIX = "/pii"
PHONE = "+41 79 123 45 67"
CONTEXT = {"tenant": "acme", "field": "phone"}


def _redacted_line() -> str:
    out = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[
            redact_processor(fields={"email"}, patterns=("email", "phone", "card")),
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
    )
    logger.info(f"callback requested on {PHONE}", email="alice@example.com", order=12345,
                note="paid with 4111 1111 1111 1111")  # fmt: skip
    return out.getvalue().strip()


def demo_part(registry: CollectorRegistry | None = None) -> Part:
    ring = Keyring.generate()
    index = BlindIndex(BlindIndex.generate_key(), name="customers.phone", bits=32)

    def walk() -> dict[str, Any]:
        pii = PIICipher(ring, registry=registry)
        token = pii.encrypt(PHONE, context=CONTEXT)
        try:
            pii.decrypt(token, context={"tenant": "globex", "field": "phone"})
            other_tenant = "decrypted (wrong!)"
        except DecryptionError as err:
            other_tenant = type(err).__name__
        rolled = ring.add_key()
        promoted = rolled.promote(rolled.newest_id)
        after = PIICipher(promoted, registry=registry)
        rotated = after.rotate(token, context=CONTEXT)
        return {
            "keyring": repr(ring),
            "token": token,
            "decrypted": pii.decrypt(token, context=CONTEXT),
            "context": CONTEXT,
            "under_another_tenant": other_tenant,
            "rotation": {
                "keyring_after": repr(promoted),
                "needs_rotation_before": after.needs_rotation(token),
                "rotated_token": rotated,
                "needs_rotation_after": after.needs_rotation(rotated),
                "old_token_still_decrypts": after.decrypt(token, context=CONTEXT) == PHONE,
            },
            "blind_index": index.compute(PHONE.replace(" ", ""), context={"tenant": "acme"}),
            "redacted_log_line": _redacted_line(),
        }

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in (PREFIX, PREFIX + "/"):
            body = json.dumps(walk(), indent=2).encode()
            await send_response(send, 200, body, content_type="application/json")
            return
        if path == PREFIX + "/self-test":
            doc = walk()
            rot = doc["rotation"]
            line = json.loads(doc["redacted_log_line"])
            ok = (
                doc["decrypted"] == PHONE
                and doc["under_another_tenant"] == "DecryptionError"
                and rot["needs_rotation_before"] is True
                and rot["needs_rotation_after"] is False
                and rot["old_token_still_decrypts"] is True
                and PHONE not in doc["redacted_log_line"]
                and line["email"] == "***"
                and line["order"] == 12345
            )
            body = json.dumps({"ok": ok}).encode()
            await send_response(send, 200 if ok else 500, body, content_type="application/json")
            return
        await send_problem(send, 404, detail=f"nothing at {path}")

    return Part(
        prefix=PREFIX,
        title="PII: a token bound to its tenant, a rotation, a redacted log line",
        app=app,
        checks=[
            ("GET", PREFIX, 200),
            ("GET", PREFIX + "/self-test", 200),
            ("GET", PREFIX + "/nowhere", 404),
        ],
    )
