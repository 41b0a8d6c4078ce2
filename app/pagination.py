"""Opaque cursors and the `limit` parameter shared by every list."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
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


_BIGINT = 2**63 - 1


def decode_cursor(cursor: str, *, parameter: str = "cursor") -> Any:
    """The value in a cursor. Cursors travel through clients, so they are checked like any
    input: besides not decoding, a value no column can hold (text with NUL, a number beyond
    64 bits) is not a cursor this service issued either."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise invalid_cursor(parameter) from None
    if not _storable(value):
        raise invalid_cursor(parameter)
    return value


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value and value.isprintable()
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -_BIGINT - 1 <= value <= _BIGINT
    if isinstance(value, float):
        return False
    if isinstance(value, list):
        return len(value) <= 4 and all(_storable(v) for v in value)
    return False


def time_id_cursor(cursor: str, *, parameter: str = "cursor") -> tuple[dt.datetime, uuid.UUID]:
    """A `[timestamp, uuid]` cursor, the timestamp aware and in UTC (as issued)."""
    value = decode_cursor(cursor, parameter=parameter)
    try:
        moment, last_id = value
        if not isinstance(moment, str) or not isinstance(last_id, str):
            raise TypeError
        at = dt.datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError
        return at.astimezone(dt.UTC), uuid.UUID(last_id)
    except (TypeError, ValueError, OverflowError):
        raise invalid_cursor(parameter) from None
