"""A JSON schema of the health+json document (draft-inadarei-api-health-check-06)."""

from __future__ import annotations

from typing import Any

_STATUS = {"enum": ["pass", "warn", "fail"]}

CHECK_ENTRY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "componentId": {"type": "string"},
        "componentType": {"type": "string"},
        "observedValue": {},
        "observedUnit": {"type": "string"},
        "status": _STATUS,
        "affectedEndpoints": {"type": "array", "items": {"type": "string"}},
        "time": {"type": "string", "format": "date-time"},
        "output": {"type": "string"},
        "links": {"type": "object"},
    },
    "required": ["status"],
    "additionalProperties": False,
}

# Every value must be non-null: the draft's fields are omitted when empty.
HEALTH_JSON: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "status": _STATUS,
        "version": {"type": "string"},
        "releaseId": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "output": {"type": "string"},
        "serviceId": {"type": "string"},
        "description": {"type": "string"},
        "links": {"type": "object"},
        "checks": {
            "type": "object",
            # "component:measurement", no colon inside either part
            "propertyNames": {"pattern": "^[^:]+:[^:]+$"},
            "additionalProperties": {"type": "array", "minItems": 1, "items": CHECK_ENTRY},
        },
    },
    "required": ["status"],
    "additionalProperties": False,
}
