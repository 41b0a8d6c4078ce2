"""Opaque cursors and the `limit` parameter shared by every list."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import Query

from app.errors import Unprocessable

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]
Cursor = Annotated[
    str | None,
    Query(description="Opaque cursor from the previous page's `next_cursor`.", max_length=500),
]


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def invalid_cursor(parameter: str = "cursor") -> Unprocessable:
    """The 422 for a cursor this service did not issue, shaped like every other invalid query
    parameter: `errors[]` names the parameter as the request spelled it (`after` or `cursor`)."""
    field, message = f"query.{parameter}", "not a cursor this service issued"
    return Unprocessable(
        f"{field}: {message}", errors=[{"field": field, "message": message, "type": "cursor"}]
    )


def decode_cursor(cursor: str, *, parameter: str = "cursor") -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid_cursor(parameter) from None
